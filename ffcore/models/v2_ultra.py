"""`featherface_v2_ultra`: the thesis fork's `RetinaFaceV2Ultra` (fokouarnaud/FeatherFace,
commit 93095ff) computed exactly as its forward computes it, with every module registered.

The fork built its five "innovations" with `create_ultra_lightweight_modules(cfg)` and kept
them in a plain Python dict (`self.innovations`). PyTorch does not see modules held in a
dict: their tensors were never in the fork's `state_dict()` (so never saved), never followed
`.to(device)` (so never moved) and never reached the optimiser (so never trained); the
complexity gate and intensity control of "dynamic sharing" stayed at whatever values
their construction drew. Here they are registered under `model.techniques` (an
`nn.ModuleDict`), so the function is the fork's and its 40 parameters are ordinary ones:
244,483 registered in the fork + 40 = 244,523.

The fork's configuration (`cfg_mnet_v2`): 20 channels after the backbone, CBAM reduction 128
(every channel MLP floors to its minimum of 4 hidden units), SSH without groups, all five
techniques on. Its dict also built an `UltraLightweightCBAM` (178 parameters) and an
`UltraLightweightSSH` (3,435) that its forward never calls; they are not part of this model
and their tensors are dropped when the fork's layout is loaded.

In forward order, with the techniques as the fork computes them (x_l is pyramid level l,
CBAM(x) = spatial_gate(channel_gate_l(x)) without residual, R(x, s) a bilinear resize of x to
the grid of s with align_corners=False):

1. backbone: MobileNet-0.25 -> C3, C4, C5 (64, 128, 256 channels).
2. backbone_attention + **attention multiplication** (factor 3): y = CBAM(c) + c, then
   a_0 = y, a_{k+1} = a_k + CBAM(a_k) for k = 0, 1 and the level's output is
   ReLU(CBAM(a_2)): the CBAM applied three more times to an accumulating sum, and only its
   last result kept (not a multiplication of attention maps).
3. neck: two ultra-light BiFPN cells (see `UltraLightBiFPNCell`).
4. **smart feature reuse** (0 parameters), on the neck outputs N3, N4, N5 only (the fork
   passes the backbone features but does not use them):
   N3 + 0.3 R(N4, N3) + 0.2 R(N5, N3);  N4 + 0.2 R(N3, N4) + 0.2 R(N5, N4);
   N5 + 0.3 R(N4, N5) + 0.2 R(N3, N5).
5. neck_attention: ReLU(x + CBAM(x)) per level (V2's shared CBAM).
6. **multi-scale intelligence** (0 parameters): P3 + 0.4 R(P4, P3);
   P4 + 0.3 R(P3, P4) + 0.3 R(P5, P4);  P5 + 0.4 R(P4, P5).
7. context + **dynamic sharing** (40 parameters): s = sigmoid(w . avgpool(x)) per image
   (w: 1x1 conv, 20 weights, no bias) and g (intensity control, 20 values, initialised
   to 1). If the mean of s over the whole batch exceeds 0.5 the level's output is
   SSH(x) * g * s, otherwise x * g (the SSH is skipped). The batch mean makes one image's
   output depend on the others in its batch, as in the fork.
8. shuffle: channel shuffle, 4 groups, standard order (no parameters).
9. **progressive enhancement** (0 parameters), three iterations i = 0, 1, 2:
   x <- shuffle_4(x + 0.1 tanh(x)) * (1 + 0.1 i)  (the fork asks for 8 groups and falls
   back to 4 when, as with 20 channels, 8 does not divide the channels).
10. heads: per level a 3x3 conv (20 -> 10) + BN + ReLU, then 1x1 convs for 2 classes,
    4 box and 10 landmark values per anchor.

Follows the model contract of docs/design.md (logits in train and eval mode).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ffcore.anchors import DEFAULT_PRIORS, PriorConfig
from ffcore.models.attention import SharedCBAM
from ffcore.models.backbone import MobileNetV1x025
from ffcore.models.blocks import ConvBNAct, channel_shuffle
from ffcore.models.necks import BiFPN
from ffcore.models.detector import config_with_overrides
from ffcore.models.registry import register_model
from ffcore.models.vit_parts import flatten_per_anchor

# Parts in forward order (the techniques interleave with them; see `FeatherFaceV2Ultra.forward`).
ULTRA_PARTS = ("backbone", "backbone_attention", "neck", "neck_attention", "context", "shuffle", "heads",
               "techniques")
# The fork's names for its techniques (the keys of its `innovations` dict).
TECHNIQUES = ("smart_feature_reuse", "attention_multiplication", "multiscale_intelligence", "dynamic_sharing",
              "progressive_enhancement")


def _resize(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=False)


def _is_tracing() -> bool:
    # Graph capture (ONNX export, torch.export, jit.trace for FLOP counting) cannot follow a
    # Python branch on a tensor's value; `DynamicSharing` then selects with torch.where.
    return (torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()
            or torch.jit.is_tracing() or torch.jit.is_scripting())


# -------------------------------------------------------------------------------- techniques

class SmartFeatureReuse(nn.Module):
    """N3 + 0.3 R(N4) + 0.2 R(N5); N4 + 0.2 R(N3) + 0.2 R(N5); N5 + 0.3 R(N4) + 0.2 R(N3)
    (R: bilinear resize to the level's grid). 0 parameters."""

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5 = features
        return [p3 + 0.3 * _resize(p4, p3) + 0.2 * _resize(p5, p3),
                p4 + 0.2 * _resize(p3, p4) + 0.2 * _resize(p5, p4),
                p5 + 0.3 * _resize(p4, p5) + 0.2 * _resize(p3, p5)]


class MultiScaleIntelligence(nn.Module):
    """P3 + 0.4 R(P4); P4 + 0.3 R(P3) + 0.3 R(P5); P5 + 0.4 R(P4) (bilinear resize). 0 parameters."""

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5 = features
        return [p3 + 0.4 * _resize(p4, p3),
                p4 + 0.3 * _resize(p3, p4) + 0.3 * _resize(p5, p4),
                p5 + 0.4 * _resize(p4, p5)]


class AttentionMultiplication(nn.Module):
    """a_0 = x, a_{k+1} = a_k + attention(a_k); returns attention(a_{factor-1}), the last
    attended map alone. 0 parameters: the attention is passed in at call time."""

    def __init__(self, factor: int = 3):
        super().__init__()
        if factor < 1:
            raise ValueError(f"attention multiplication factor must be >= 1, got {factor}")
        self.factor = factor

    def forward(self, x: torch.Tensor, attention) -> torch.Tensor:
        accumulated = x
        for _ in range(self.factor):
            attended = attention(accumulated)
            accumulated = accumulated + attended
        return attended


class ProgressiveEnhancement(nn.Module):
    """`iterations` times: x <- shuffle(x + factor tanh(x)) * (1 + 0.1 i). 0 parameters.

    The shuffle asks for 8 groups and, like the fork, falls back to 4, then 2, then no
    shuffle when the channel count is not divisible.
    """

    def __init__(self, iterations: int = 3, factor: float = 0.1, groups: int = 8):
        super().__init__()
        self.iterations, self.factor, self.groups = iterations, factor, groups

    def shuffle_groups(self, channels: int) -> int:
        for groups in (self.groups, 4, 2):
            if channels % groups == 0:
                return groups
        return 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = self.shuffle_groups(x.shape[1])
        for i in range(self.iterations):
            x = x + self.factor * torch.tanh(x)
            if groups > 1:
                x = channel_shuffle(x, groups, "standard")
            x = x * (1.0 + i * 0.1)
        return x


class DynamicSharing(nn.Module):
    """s = sigmoid(conv1x1(avgpool(x))) [B, 1, 1, 1]; if mean(s) over the batch > 0.5:
    module(x) * g * s, else x * g (module skipped). g: per-channel intensity, starts at 1.
    Parameters: channels (gate, no bias) + channels (g).

    While a graph is captured (ONNX export, FLOP counting by tracing) or on the meta device,
    both branches are computed and torch.where picks one: same values, but a traced FLOP count
    includes the SSH even where the fork would skip it."""

    def __init__(self, channels: int):
        super().__init__()
        self.complexity_gate = nn.Conv2d(channels, 1, 1, bias=False)
        self.intensity_control = nn.Parameter(torch.ones(channels, 1, 1))

    def forward(self, x: torch.Tensor, module: nn.Module) -> torch.Tensor:
        score = torch.sigmoid(self.complexity_gate(F.adaptive_avg_pool2d(x, 1)))
        complex_scene = score.mean() > 0.5
        if _is_tracing() or x.is_meta:   # meta tensors have no values to branch on
            return torch.where(complex_scene, module(x) * self.intensity_control * score, x * self.intensity_control)
        if complex_scene:
            return module(x) * self.intensity_control * score
        return x * self.intensity_control


# ------------------------------------------------------------------------------- parts

class UltraLightBiFPNCell(nn.Module):
    """The fork's `UltraLightBiFPN`: ONE separable conv (depthwise 3x3 -> 1x1 -> BN -> ReLU)
    shared by the four nodes, and three fusion weights w = relu(v) / (sum relu(v) + 1e-4)
    reused across nodes:

        P4_td = conv(w0 P4 + w1 up(P5));     P3_out = conv(w0 P3 + w2 up(P4_td))
        P4_out = conv(w0 P4_td + w1 pool(P3_out));  P5_out = conv(w0 P5 + w2 pool(P4_out))

    (up: nearest; pool: max 3x3, stride 2, padding 1). The first cell projects the backbone
    levels with 1x1 conv + BN (no activation).
    """

    def __init__(self, channels: int, in_channels: tuple[int, ...] | None = None):
        super().__init__()
        self.reducers = (nn.ModuleList(ConvBNAct(c, channels, 1) for c in in_channels)
                         if in_channels is not None else None)
        self.depthwise = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.fusion_weights = nn.Parameter(torch.ones(3))
        self.epsilon = 1e-4

    def conv(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.pointwise(self.depthwise(x))))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.reducers is not None:
            features = [reduce(x) for reduce, x in zip(self.reducers, features)]
        p3, p4, p5 = features
        w = torch.relu(self.fusion_weights)
        w = w / (w.sum() + self.epsilon)
        p4_td = self.conv(w[0] * p4 + w[1] * F.interpolate(p5, size=p4.shape[-2:], mode="nearest"))
        p3_out = self.conv(w[0] * p3 + w[2] * F.interpolate(p4_td, size=p3.shape[-2:], mode="nearest"))
        p4_out = self.conv(w[0] * p4_td + w[1] * F.max_pool2d(p3_out, 3, 2, 1))
        p5_out = self.conv(w[0] * p5 + w[2] * F.max_pool2d(p4_out, 3, 2, 1))
        return [p3_out, p4_out, p5_out]


class UltraSSH(nn.Module):
    """The fork's `UltraLightweightSSH`: a = BN(conv3x3 c -> c/2); b1 = ReLU(BN(conv c -> c/4));
    b = BN(conv b1); c1 = ReLU(BN(conv b)); c = BN(conv c1); ReLU(cat[a, b, c]).
    Unlike the SSH paper, the 7x7 branch starts from b (after its BN), not from b1."""

    def __init__(self, channels: int, groups: int = 1):
        super().__init__()
        if channels % 4 or (channels // 4) % groups:
            raise ValueError(f"UltraSSH: {channels} channels must be divisible by 4 and channels/4 by {groups} groups")
        half, quarter = channels // 2, channels // 4
        self.conv3x3 = ConvBNAct(channels, half, 3, groups=groups)
        self.conv5x5_1 = ConvBNAct(channels, quarter, 3, groups=groups, activation="relu")
        self.conv5x5_2 = ConvBNAct(quarter, quarter, 3, groups=groups)
        self.conv7x7_1 = ConvBNAct(quarter, quarter, 3, groups=groups, activation="relu")
        self.conv7x7_2 = ConvBNAct(quarter, quarter, 3, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch_b = self.conv5x5_2(self.conv5x5_1(x))
        branch_c = self.conv7x7_2(self.conv7x7_1(branch_b))
        return torch.relu(torch.cat([self.conv3x3(x), branch_b, branch_c], dim=1))


class LevelContext(nn.Module):
    def __init__(self, channels: int, groups: int, levels: int = 3):
        super().__init__()
        self.levels = nn.ModuleList(UltraSSH(channels, groups) for _ in range(levels))


class ChannelShuffle(nn.Module):
    """Parameter-free shuffle: 4 groups if they divide the channels, else 2, else none."""

    def __init__(self, channels: int):
        super().__init__()
        self.groups = 4 if channels % 4 == 0 else 2 if channels % 2 == 0 else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.groups == 1 else channel_shuffle(x, self.groups, "standard")


class UltraHead(nn.Module):
    """The fork's `UltraSmartHead`: 3x3 conv c -> c/2 + BN + ReLU, then 1x1 convs (with bias)."""

    def __init__(self, channels: int, anchors: int):
        super().__init__()
        self.shared = ConvBNAct(channels, channels // 2, 3, activation="relu")
        self.cls = nn.Conv2d(channels // 2, anchors * 2, 1)
        self.box = nn.Conv2d(channels // 2, anchors * 4, 1)
        self.landmark = nn.Conv2d(channels // 2, anchors * 10, 1)


class UltraHeads(nn.Module):
    def __init__(self, channels: int, anchors: int, levels: int = 3):
        super().__init__()
        self.levels = nn.ModuleList(UltraHead(channels, anchors) for _ in range(levels))

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        locs, confs, landms = [], [], []
        for head, x in zip(self.levels, features):
            shared = head.shared(x)
            locs.append(flatten_per_anchor(head.box(shared), 4))
            confs.append(flatten_per_anchor(head.cls(shared), 2))
            landms.append(flatten_per_anchor(head.landmark(shared), 10))
        return torch.cat(locs, dim=1), torch.cat(confs, dim=1), torch.cat(landms, dim=1)


# ---------------------------------------------------------------------------------- model

@dataclass(frozen=True)
class UltraConfig:
    """The fork's `cfg_mnet_v2` for V2 Ultra (out_channel_v2 20, cbam_reduction 128,
    ssh_groups 1, attention_multiply 3) and the constants of its technique classes
    (progressive enhancement: 3 iterations, factor 0.1)."""

    channels: int = 20
    neck_repeats: int = 2
    cbam_reduction: int = 128
    ssh_groups: int = 1
    attention_multiply: int = 3
    progressive_iterations: int = 3
    progressive_factor: float = 0.1
    priors: PriorConfig = DEFAULT_PRIORS


class FeatherFaceV2Ultra(nn.Module):
    """The fork's V2 Ultra with registered techniques; see the module docstring for the formulas."""

    parts = ULTRA_PARTS

    def __init__(self, config: UltraConfig = UltraConfig()):
        super().__init__()
        self.config = config
        self.prior_config = config.priors
        self.name = "featherface_v2_ultra"
        self.overrides: dict = {}
        width = config.channels
        self.backbone = MobileNetV1x025()
        self.backbone_attention = SharedCBAM(tuple(self.backbone.feature_channels), reduction=config.cbam_reduction)
        self.neck = BiFPN(tuple(self.backbone.feature_channels), width, config.neck_repeats, UltraLightBiFPNCell)
        self.neck_attention = SharedCBAM((width,) * 3, reduction=config.cbam_reduction)
        self.context = LevelContext(width, config.ssh_groups)
        self.shuffle = ChannelShuffle(width)
        self.heads = UltraHeads(width, config.priors.anchors_per_location)
        self.techniques = nn.ModuleDict({
            "smart_feature_reuse": SmartFeatureReuse(),
            "attention_multiplication": AttentionMultiplication(config.attention_multiply),
            "multiscale_intelligence": MultiScaleIntelligence(),
            "dynamic_sharing": DynamicSharing(width),
            "progressive_enhancement": ProgressiveEnhancement(config.progressive_iterations,
                                                              config.progressive_factor),
        })

    def _backbone_attention(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        spatial = self.backbone_attention.spatial_gate
        multiply = self.techniques["attention_multiplication"]
        outputs = []
        for x, channel_gate in zip(features, self.backbone_attention.channel_gates):
            def cbam(t: torch.Tensor, gate=channel_gate) -> torch.Tensor:
                return spatial(gate(t))
            outputs.append(torch.relu(multiply(cbam(x) + x, cbam)))
        return outputs

    def forward(self, x: torch.Tensor, return_features: bool = False):
        t = self.techniques
        features = self._backbone_attention(self.backbone(x))
        features = t["smart_feature_reuse"](self.neck(features))
        features = t["multiscale_intelligence"](self.neck_attention(features))
        features = [t["dynamic_sharing"](f, ssh) for f, ssh in zip(features, self.context.levels)]
        features = [t["progressive_enhancement"](self.shuffle(f)) for f in features]
        loc, conf, landm = self.heads(features)
        if return_features:
            return loc, conf, landm, features
        return loc, conf, landm


def build_ultra(**overrides) -> FeatherFaceV2Ultra:
    return FeatherFaceV2Ultra(config_with_overrides(UltraConfig(), overrides, "featherface_v2_ultra"))


@register_model("featherface_v2_ultra",
                "FeatherFace V2 Ultra as the fork (93095ff) computes it: 20 ch, five techniques registered")
def featherface_v2_ultra(**overrides) -> FeatherFaceV2Ultra:
    return build_ultra(**overrides)
