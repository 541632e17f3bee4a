"""Parts of `featherface_v2_vit`, the project overview's V2 target architecture.

UltraEfficientViT (backbone with linear attention), PyramidAttentionFusion (neck with
cross-scale attention and separable convolutions), DynamicChannelAttention and
SharedDetectionHead (one head shared by the three levels, nine anchors per cell). Each
part is an `nn.Module` sized by a frozen config, so its parameter count is measured, not
asserted; `ffcore params` prints the counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ffcore.models.blocks import ConvBNAct, make_activation

ACTIVATION = "silu"


def _check_divisible(what: str, channels: int, groups: int) -> None:
    if channels % groups:
        raise ValueError(f"{what}: {channels} channels do not split into {groups} groups; "
                         f"pick a channel count that is a multiple of {groups}")


class SeparableConv(nn.Module):
    """Depthwise kxk (stride s) -> BN -> 1x1 conv -> BN -> activation."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, kernel_size: int = 3,
                 activation: str | None = ACTIVATION):
        super().__init__()
        self.depthwise = ConvBNAct(in_channels, in_channels, kernel_size, stride, groups=in_channels)
        self.pointwise = ConvBNAct(in_channels, out_channels, 1, activation=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


# ------------------------------------------------------------------------------ backbone

class LinearAttention(nn.Module):
    """Multi-head kernelised attention, linear in the number of positions (Katharopoulos 2020).

    With feature map phi(t) = elu(t) + 1 (positive), position n attends as
    out_n = phi(q_n)^T (sum_m phi(k_m) v_m^T) / (phi(q_n)^T sum_m phi(k_m)); the d x d
    summary is computed once, so cost grows as O(N d^2) instead of O(N^2 d).
    Projections are grouped 1x1 convs (one group per head) to keep the part small.
    """

    def __init__(self, channels: int, heads: int, key_dim: int):
        super().__init__()
        _check_divisible("LinearAttention", channels, heads)
        self.heads, self.key_dim = heads, key_dim
        self.value_dim = channels // heads
        self.qkv = nn.Conv2d(channels, heads * (2 * key_dim + self.value_dim), 1, groups=heads, bias=False)
        self.proj = ConvBNAct(channels, channels, 1, groups=heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        qkv = self.qkv(x).reshape(batch, self.heads, 2 * self.key_dim + self.value_dim, height * width)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.value_dim], dim=2)
        q, k = F.elu(q) + 1.0, F.elu(k) + 1.0                                 # [B, h, d, N]
        # Average instead of sum over positions: the same ratio, numbers that stay O(1) at any N.
        summary = torch.matmul(k, v.transpose(2, 3)) / (height * width)       # [B, h, d, e]
        k_mean = k.mean(dim=3, keepdim=True)                                  # [B, h, d, 1]
        numerator = torch.matmul(q.transpose(2, 3), summary)                 # [B, h, N, e]
        denominator = torch.matmul(q.transpose(2, 3), k_mean) + 1e-6          # [B, h, N, 1]
        out = (numerator / denominator).transpose(2, 3).reshape(batch, channels, height, width)
        return self.proj(out)


class LinearAttentionBlock(nn.Module):
    """x + dwconv(x) (position encoding), x + attention(x), x + FFN(x).

    The FFN is an inverted bottleneck with grouped 1x1 convs around a depthwise 3x3, with
    a channel shuffle so the groups mix.
    """

    def __init__(self, channels: int, heads: int, key_dim: int, expansion: int, ffn_groups: int):
        super().__init__()
        hidden = channels * expansion
        _check_divisible("LinearAttentionBlock FFN", channels, ffn_groups)
        self.ffn_groups = ffn_groups
        self.position = ConvBNAct(channels, channels, 3, groups=channels)
        self.attention = LinearAttention(channels, heads, key_dim)
        self.ffn = nn.Sequential(
            ConvBNAct(channels, hidden, 1, groups=ffn_groups, activation=ACTIVATION),
            ConvBNAct(hidden, hidden, 3, groups=hidden, activation=ACTIVATION),
            ConvBNAct(hidden, channels, 1, groups=ffn_groups),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.position(x)
        x = x + self.attention(x)
        if self.ffn_groups > 1:
            # Mix the attention heads' channel groups before the grouped FFN.
            b, c, h, w = x.shape
            shuffled = x.reshape(b, self.ffn_groups, c // self.ffn_groups, h, w).transpose(1, 2).reshape(b, c, h, w)
        else:
            shuffled = x
        return x + self.ffn(shuffled)


@dataclass(frozen=True)
class UltraEfficientViTConfig:
    stem_channels: tuple[int, ...] = (16, 24)        # stride 2, 4
    stage_channels: tuple[int, ...] = (32, 64, 128)  # stride 8, 16, 32 (the three outputs)
    stage_depths: tuple[int, ...] = (1, 1, 1)
    heads: tuple[int, ...] = (2, 4, 8)
    key_dim: int = 8
    ffn_expansion: int = 2
    ffn_groups: tuple[int, ...] = (2, 4, 8)


class UltraEfficientViT(nn.Module):
    """Convolutional stem (strides 2, 4) then three stages of linear-attention blocks.

    Each stage starts with a stride-2 separable conv; outputs C3, C4, C5 at strides 8, 16,
    32 with `feature_channels` channels. All stride-2 layers use 3x3 kernels with padding 1,
    so a side n maps to ceil(n / 2): the grids are ceil(H / s) x ceil(W / s) like the priors.
    """

    feature_strides = (8, 16, 32)

    def __init__(self, config: UltraEfficientViTConfig = UltraEfficientViTConfig()):
        super().__init__()
        if len(config.stem_channels) != 2 or len(config.stage_channels) != 3:
            raise ValueError("UltraEfficientViTConfig needs two stem widths (strides 2, 4) and three stage "
                             f"widths (strides 8, 16, 32); got {config.stem_channels}, {config.stage_channels}")
        self.config = config
        self.feature_channels = tuple(config.stage_channels)
        s2, s4 = config.stem_channels
        self.stem = nn.Sequential(ConvBNAct(3, s2, 3, 2, activation=ACTIVATION), SeparableConv(s2, s4, stride=2))
        stages, previous = [], s4
        for channels, depth, heads, groups in zip(config.stage_channels, config.stage_depths, config.heads,
                                                  config.ffn_groups):
            blocks = [SeparableConv(previous, channels, stride=2)]
            blocks += [LinearAttentionBlock(channels, heads, config.key_dim, config.ffn_expansion, groups)
                       for _ in range(depth)]
            stages.append(nn.Sequential(*blocks))
            previous = channels
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs


# ---------------------------------------------------------------------------------- neck

class CrossScaleAttention(nn.Module):
    """Per-position attention over the pyramid's scales.

    For target level t, every level s is resized (nearest) to t's grid; at each position the
    query q = W_q x_t is compared with keys k_s = W_k x_s, softmax over the scales s of
    q·k_s / sqrt(d) gives the weights, and the output is sum_s a_s x_s.
    """

    def __init__(self, channels: int, key_dim: int):
        super().__init__()
        self.query = nn.Conv2d(channels, key_dim, 1, bias=False)
        self.key = nn.Conv2d(channels, key_dim, 1, bias=False)
        self.scale = key_dim ** -0.5

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        keys = [self.key(x) for x in features]
        outputs = []
        for target in features:
            size = target.shape[-2:]
            values = torch.stack([F.interpolate(x, size=size, mode="nearest") for x in features], dim=1)
            key_maps = torch.stack([F.interpolate(k, size=size, mode="nearest") for k in keys], dim=1)
            query = self.query(target).unsqueeze(1)                       # [B, 1, d, H, W]
            weights = torch.softmax((query * key_maps).sum(dim=2) * self.scale, dim=1)  # [B, S, H, W]
            outputs.append((weights.unsqueeze(2) * values).sum(dim=1))
        return outputs


class PyramidFusionCell(nn.Module):
    """Cross-scale attention, then per level a separable conv of the attended map, fused
    with the input by fast normalised weights relu(w) / (sum relu(w) + 1e-4)."""

    def __init__(self, channels: int, key_dim: int, levels: int):
        super().__init__()
        self.cross_scale = CrossScaleAttention(channels, key_dim)
        self.refine = nn.ModuleList(SeparableConv(channels, channels) for _ in range(levels))
        self.fusion_weights = nn.Parameter(torch.ones(levels, 2))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        attended = self.cross_scale(features)
        weights = torch.relu(self.fusion_weights)
        weights = weights / (weights.sum(dim=1, keepdim=True) + 1e-4)
        return [weights[i, 0] * x + weights[i, 1] * refine(a)
                for i, (x, a, refine) in enumerate(zip(features, attended, self.refine))]


@dataclass(frozen=True)
class PyramidAttentionFusionConfig:
    channels: int = 64
    key_dim: int = 16
    cells: int = 3


class PyramidAttentionFusion(nn.Module):
    """1x1 lateral projections to a common width, then `cells` PyramidFusionCells."""

    def __init__(self, in_channels: tuple[int, ...],
                 config: PyramidAttentionFusionConfig = PyramidAttentionFusionConfig()):
        super().__init__()
        self.config = config
        self.lateral = nn.ModuleList(ConvBNAct(c, config.channels, 1, activation=ACTIVATION) for c in in_channels)
        self.cells = nn.ModuleList(PyramidFusionCell(config.channels, config.key_dim, len(in_channels))
                                   for _ in range(config.cells))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        features = [lateral(x) for lateral, x in zip(self.lateral, features)]
        for cell in self.cells:
            features = cell(features)
        return features


# ----------------------------------------------------------------------------- attention

class DynamicChannelAttention(nn.Module):
    """Input-conditioned channel gates, one small MLP per level.

    For each level and image: descriptor [global mean, global max] (2C) -> Linear -> SiLU ->
    Linear -> sigmoid gives C weights; x <- x * (1 + gate) so the block starts close to
    a scaled identity and cannot switch a channel off completely.
    """

    def __init__(self, channels: int, hidden: int, levels: int = 3):
        super().__init__()
        self.gates = nn.ModuleList(nn.Sequential(nn.Linear(2 * channels, hidden), make_activation(ACTIVATION),
                                                 nn.Linear(hidden, channels)) for _ in range(levels))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs = []
        for gate, x in zip(self.gates, features):
            descriptor = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
            outputs.append(x * (1.0 + torch.sigmoid(gate(descriptor)))[:, :, None, None])
        return outputs


# ---------------------------------------------------------------------------------- head

class SharedDetectionHead(nn.Module):
    """One head for all levels: a shared conv tower whose features feed classification,
    box and landmark predictions alike.

    The tower's 3x3 convs are shared by the levels; each level keeps its own BatchNorm
    (as EfficientDet's heads), because the levels' statistics differ. Outputs are NHWC-
    flattened per level (index (row * cols + col) * anchors + anchor) and concatenated
    P3, P4, P5, the order of `ffcore.anchors.make_priors`.
    """

    def __init__(self, channels: int, anchors: int, depth: int = 2, levels: int = 3):
        super().__init__()
        self.anchors = anchors
        self.tower = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1, bias=False) for _ in range(depth))
        self.tower_norms = nn.ModuleList(nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(levels))
                                         for _ in range(depth))
        self.act = make_activation(ACTIVATION)
        self.cls = nn.Conv2d(channels, anchors * 2, 1)
        self.box = nn.Conv2d(channels, anchors * 4, 1)
        self.landmark = nn.Conv2d(channels, anchors * 10, 1)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        locs, confs, landms = [], [], []
        for level, x in enumerate(features):
            for conv, norms in zip(self.tower, self.tower_norms):
                x = self.act(norms[level](conv(x)))
            locs.append(flatten_per_anchor(self.box(x), 4))
            confs.append(flatten_per_anchor(self.cls(x), 2))
            landms.append(flatten_per_anchor(self.landmark(x), 10))
        return torch.cat(locs, dim=1), torch.cat(confs, dim=1), torch.cat(landms, dim=1)


def flatten_per_anchor(x: torch.Tensor, per_anchor: int) -> torch.Tensor:
    """[B, A * k, H, W] -> [B, H * W * A, k]: NHWC order, the priors' row -> column -> anchor."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, per_anchor)
