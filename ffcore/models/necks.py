"""Feature pyramids: FPN (RetinaFace), BiFPN (FeatherFace V1), BiFPN_Light (FeatherFace V2).

Every neck takes the backbone's per-level channels and returns three maps of
`channels` channels (P3, P4, P5).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ffcore.models.blocks import ConvBNAct, tf_same_pad, upsample_to

TF_SAME_MAX_POOL_OP = "ffcore::tf_same_max_pool2d"

FUSION_EPS = 1e-4


def fast_normalized_fusion(weights: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
    """EfficientDet's fusion: w <- ReLU(w) / (sum ReLU(w) + eps), then sum w_i * x_i.

    Every weight enters the normalisation even when there are fewer inputs than weights
    (V1's p5 output has three weights and two inputs; the third is never applied).
    """
    w = torch.relu(weights)
    w = w / (w.sum() + FUSION_EPS)
    out = w[0] * inputs[0]
    for i in range(1, len(inputs)):
        out = out + w[i] * inputs[i]
    return out


class FPN(nn.Module):
    """RetinaFace FPN: 1x1 laterals, top-down nearest upsampling, 3x3 merges on P4 and P3."""

    def __init__(self, in_channels: tuple[int, ...], channels: int = 64):
        super().__init__()
        c3, c4, c5 = in_channels
        self.lateral3 = ConvBNAct(c3, channels, 1, activation="leaky_relu")
        self.lateral4 = ConvBNAct(c4, channels, 1, activation="leaky_relu")
        self.lateral5 = ConvBNAct(c5, channels, 1, activation="leaky_relu")
        self.merge4 = ConvBNAct(channels, channels, 3, activation="leaky_relu")
        self.merge3 = ConvBNAct(channels, channels, 3, activation="leaky_relu")

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        c3, c4, c5 = features
        p5 = self.lateral5(c5)
        p4 = self.merge4(self.lateral4(c4) + upsample_to(p5, c4))
        p3 = self.merge3(self.lateral3(c3) + upsample_to(p4, c3))
        return [p3, p4, p5]


# ----------------------------------------------------------------------------- BiFPN (V1)

class SameSeparableConv(nn.Module):
    """V1 BiFPN conv: TF-"same" depthwise 3x3 (no bias) -> 1x1 (bias) -> BN(0.01, 1e-3), no activation."""

    def __init__(self, channels: int):
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=True)
        self.bn = nn.BatchNorm2d(channels, momentum=0.01, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # TF "same" with stride 1 pads k - 1 = 2 whatever the size: one pixel on each side.
        # Written as a constant so that exported graphs carry no shape arithmetic for it.
        return self.bn(self.pointwise(self.depthwise(F.pad(x, [1, 1, 1, 1]))))


@torch.library.custom_op(TF_SAME_MAX_POOL_OP, mutates_args=())
def tf_same_max_pool2d(x: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """TF-"same" zero padding then max-pool, as one operator for graph export.

    The padding depends on the parity of H and W. Traced as plain ops, torch.export has to
    prove that the pooled size, n + max(k - s + (-n mod s), 0) reduced by the pool, equals
    the backbone's stride-2 size; it cannot, and the export fails for general sizes. As one
    operator whose output size is written (n - 1) // s + 1 -- the very expression a padded
    stride-s convolution gives -- the shapes agree symbolically, and the ONNX translation
    (`ffcore.deploy.export`) computes the padding from the input's shape inside the graph.
    """
    return F.max_pool2d(tf_same_pad(x, kernel_size, stride), kernel_size, stride)


@tf_same_max_pool2d.register_fake
def _tf_same_max_pool2d_shape(x: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    height, width = x.shape[-2:]
    return x.new_empty((*x.shape[:-2], (height - 1) // stride + 1, (width - 1) // stride + 1))


def _same_max_pool(x: torch.Tensor) -> torch.Tensor:
    # Zero padding (not -inf) before the pool, as the original's static "same" max-pool does.
    if torch.compiler.is_exporting():
        return tf_same_max_pool2d(x, 3, 2)
    # Eager (training included) keeps the differentiable composition.
    return F.max_pool2d(tf_same_pad(x, 3, 2), 3, 2)


def _swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class _InputProjection(ConvBNAct):
    def __init__(self, in_channels: int, channels: int, bias: bool):
        super().__init__(in_channels, channels, 1, bias=bias, bn_eps=1e-3, bn_momentum=0.01)


class BiFPNCell(nn.Module):
    """One V1 BiFPN cell (EfficientDet fast fusion) on P3-P5.

    The first cell projects the backbone maps (1x1 conv with bias -> BN) and owns a second
    projection of C4 and C5 for the bottom-up path.
    """

    def __init__(self, channels: int, in_channels: tuple[int, ...] | None = None):
        super().__init__()
        self.first = in_channels is not None
        if self.first:
            c3, c4, c5 = in_channels
            self.in_p3 = _InputProjection(c3, channels, bias=True)
            self.in_p4 = _InputProjection(c4, channels, bias=True)
            self.in_p5 = _InputProjection(c5, channels, bias=True)
            self.in_p4_bottom_up = _InputProjection(c4, channels, bias=True)
            self.in_p5_bottom_up = _InputProjection(c5, channels, bias=True)
        self.p4_td_weights = nn.Parameter(torch.ones(2))
        self.p3_out_weights = nn.Parameter(torch.ones(2))
        self.p4_out_weights = nn.Parameter(torch.ones(3))
        self.p5_out_weights = nn.Parameter(torch.ones(3))  # third entry unused (see fast_normalized_fusion)
        self.p4_td_conv = SameSeparableConv(channels)
        self.p3_out_conv = SameSeparableConv(channels)
        self.p4_out_conv = SameSeparableConv(channels)
        self.p5_out_conv = SameSeparableConv(channels)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.first:
            c3, c4, c5 = features
            p3, p4, p5 = self.in_p3(c3), self.in_p4(c4), self.in_p5(c5)
            p4_skip, p5_skip = self.in_p4_bottom_up(c4), self.in_p5_bottom_up(c5)
        else:
            p3, p4, p5 = features
            p4_skip, p5_skip = p4, p5
        p4_td = self.p4_td_conv(_swish(fast_normalized_fusion(self.p4_td_weights, [p4, upsample_to(p5, p4)])))
        p3_out = self.p3_out_conv(_swish(fast_normalized_fusion(self.p3_out_weights, [p3, upsample_to(p4_td, p3)])))
        p4_out = self.p4_out_conv(_swish(fast_normalized_fusion(
            self.p4_out_weights, [p4_skip, p4_td, _same_max_pool(p3_out)])))
        p5_out = self.p5_out_conv(_swish(fast_normalized_fusion(
            self.p5_out_weights, [p5_skip, _same_max_pool(p4_out)])))
        return [p3_out, p4_out, p5_out]


# ----------------------------------------------------------------------- BiFPN_Light (V2)

class SeparableConvBNReLU(nn.Module):
    """V2 BiFPN_Light conv: depthwise 3x3 -> BN -> ReLU -> 1x1 -> BN (no biases, BN momentum 0.01)."""

    def __init__(self, channels: int):
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.bn1 = nn.BatchNorm2d(channels, eps=1e-5, momentum=0.01)
        self.act = nn.ReLU(inplace=True)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, eps=1e-5, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.pointwise(self.act(self.bn1(self.depthwise(x)))))


class BiFPNLightCell(nn.Module):
    """One V2 BiFPN_Light cell: PyTorch-padded max-pool, SiLU, and a three-input P5 fusion."""

    def __init__(self, channels: int, in_channels: tuple[int, ...] | None = None):
        super().__init__()
        self.first = in_channels is not None
        if self.first:
            c3, c4, c5 = in_channels
            # One projection per level, reused by the bottom-up path.
            self.in_p3 = _InputProjection(c3, channels, bias=False)
            self.in_p4 = _InputProjection(c4, channels, bias=False)
            self.in_p5 = _InputProjection(c5, channels, bias=False)
        self.p4_td_weights = nn.Parameter(torch.ones(2))
        self.p3_out_weights = nn.Parameter(torch.ones(2))
        self.p4_out_weights = nn.Parameter(torch.ones(3))
        self.p5_out_weights = nn.Parameter(torch.ones(3))
        self.p4_td_conv = SeparableConvBNReLU(channels)
        self.p3_out_conv = SeparableConvBNReLU(channels)
        self.p4_out_conv = SeparableConvBNReLU(channels)
        self.p5_out_conv = SeparableConvBNReLU(channels)
        self.down = nn.MaxPool2d(3, stride=2, padding=1)
        self.swish = nn.SiLU()

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.first:
            c3, c4, c5 = features
            p3, p4, p5 = self.in_p3(c3), self.in_p4(c4), self.in_p5(c5)
        else:
            p3, p4, p5 = features
        p4_td = self.p4_td_conv(self.swish(fast_normalized_fusion(self.p4_td_weights, [p4, upsample_to(p5, p4)])))
        p3_out = self.p3_out_conv(self.swish(fast_normalized_fusion(self.p3_out_weights,
                                                                     [p3, upsample_to(p4_td, p3)])))
        p4_out = self.p4_out_conv(self.swish(fast_normalized_fusion(self.p4_out_weights,
                                                                     [p4, p4_td, self.down(p3_out)])))
        p5_out = self.p5_out_conv(self.swish(fast_normalized_fusion(
            self.p5_out_weights, [p5, self.down(p4_out), self.down(p4_td)])))
        return [p3_out, p4_out, p5_out]


class BiFPN(nn.Module):
    """A stack of BiFPN cells; the first one projects the backbone channels."""

    def __init__(self, in_channels: tuple[int, ...], channels: int, repeats: int, cell: type[nn.Module]):
        super().__init__()
        self.cells = nn.ModuleList(cell(channels, in_channels if i == 0 else None) for i in range(repeats))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        for cell in self.cells:
            features = cell(features)
        return features


def build_neck(name: str, in_channels: tuple[int, ...], channels: int, repeats: int | None) -> nn.Module:
    if name == "fpn":
        return FPN(in_channels, channels)
    if name == "bifpn":
        return BiFPN(in_channels, channels, repeats or 3, BiFPNCell)
    if name == "bifpn_light":
        return BiFPN(in_channels, channels, repeats or 2, BiFPNLightCell)
    raise ValueError(f"unknown neck {name!r}; available: {', '.join(NECKS)}")


NECKS = ("fpn", "bifpn", "bifpn_light")
