"""MobileNetV1 x0.25, the backbone of RetinaFace-MobileNet-0.25 and both FeatherFace models."""

from __future__ import annotations

import torch
import torch.nn as nn

from ffcore.models.blocks import ConvBNAct


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv -> BN -> LeakyReLU(0.1) -> 1x1 conv -> BN -> LeakyReLU(0.1)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.depthwise = ConvBNAct(in_channels, in_channels, 3, stride, groups=in_channels, activation="leaky_relu")
        self.pointwise = ConvBNAct(in_channels, out_channels, 1, activation="leaky_relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class MobileNetV1x025(nn.Module):
    """Three stages returning C3 (64 ch, stride 8), C4 (128, 16), C5 (256, 32).

    `feature_channels` and `feature_strides` are published so that necks size themselves.
    """

    feature_channels = (64, 128, 256)
    feature_strides = (8, 16, 32)

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(
            ConvBNAct(3, 8, 3, 2, activation="leaky_relu"),
            DepthwiseSeparable(8, 16, 1),
            DepthwiseSeparable(16, 32, 2),
            DepthwiseSeparable(32, 32, 1),
            DepthwiseSeparable(32, 64, 2),
            DepthwiseSeparable(64, 64, 1),
        )
        self.stage2 = nn.Sequential(DepthwiseSeparable(64, 128, 2), *[DepthwiseSeparable(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(DepthwiseSeparable(128, 256, 2), DepthwiseSeparable(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c3 = self.stage1(x)
        c4 = self.stage2(c3)
        c5 = self.stage3(c4)
        return [c3, c4, c5]


BACKBONES = {"mobilenet_v1_025": MobileNetV1x025}
