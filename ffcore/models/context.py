"""Context modules applied to each pyramid level: SSH, deformable SSH (V1), grouped SSH (V2).

All three keep the SSH layout: branch a (3x3 receptive field, half the output channels),
a shared stem b1, branch b (5x5) and branch c (7x7, via c1), each a quarter of the output
channels; output ReLU(cat[a, b, c]). Branch names follow the SSH paper's receptive fields.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.ops import deform_conv2d

from ffcore.models.blocks import ConvBNAct, make_activation


class ModulatedDeformConv2d(nn.Module):
    """DCNv2 3x3: offsets (18 ch) and a 2*sigmoid mask (9 ch) predicted by 3x3 convs.

    Offset and mask convs start at zero, so the layer starts as a plain 3x3 conv. The main
    weight is applied through `torchvision.ops.deform_conv2d`, which is why profilers that
    only hook standard layers (thop) do not count it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        taps = kernel_size * kernel_size
        self.padding = padding
        self.offset_conv = nn.Conv2d(in_channels, 2 * taps, kernel_size, padding=padding, bias=True)
        self.mask_conv = nn.Conv2d(in_channels, taps, kernel_size, padding=padding, bias=True)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)  # nn.Conv2d's default initialisation
        for conv in (self.offset_conv, self.mask_conv):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset = self.offset_conv(x)
        mask = 2.0 * torch.sigmoid(self.mask_conv(x))
        return deform_conv2d(x, offset, self.weight, bias=None, padding=self.padding, mask=mask)


class DeformConvBNAct(nn.Module):
    """ModulatedDeformConv2d -> BN -> optional activation (keys `conv.*`, `bn.*`)."""

    def __init__(self, in_channels: int, out_channels: int, activation: str | None = None):
        super().__init__()
        self.conv = ModulatedDeformConv2d(in_channels, out_channels)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ReduceThenGroupedConv(nn.Module):
    """V2 branch entry: 1x1 conv -> BN -> ReLU, then grouped 3x3 conv -> BN."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.reduce = ConvBNAct(in_channels, out_channels, 1, activation="relu")
        self.spatial = ConvBNAct(out_channels, out_channels, 3, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.reduce(x))


class SSH(nn.Module):
    """SSH context module with one of three convolution styles.

    style "plain" (RetinaFace): 3x3 convs, LeakyReLU(0.1) after b1 and c1.
    style "deformable" (FeatherFace V1): the same with every 3x3 conv a DCNv2.
    style "grouped" (FeatherFace V2): 1x1 reductions and grouped 3x3 convs, ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, style: str = "plain", groups: int = 4):
        super().__init__()
        if out_channels % 4:
            raise ValueError(f"SSH output channels must be a multiple of 4, got {out_channels}")
        half, quarter = out_channels // 2, out_channels // 4
        if style in ("plain", "deformable"):
            def conv(i, o, act=None):
                if style == "plain":
                    return ConvBNAct(i, o, 3, activation=act)
                return DeformConvBNAct(i, o, activation=act)

            self.conv3x3 = conv(in_channels, half)
            self.conv5x5_1 = conv(in_channels, quarter, "leaky_relu")
            self.conv5x5_2 = conv(quarter, quarter)
            self.conv7x7_2 = conv(quarter, quarter, "leaky_relu")
            self.conv7x7_3 = conv(quarter, quarter)
        elif style == "grouped":
            self.conv3x3 = ReduceThenGroupedConv(in_channels, half, groups)
            self.conv5x5_1 = ReduceThenGroupedConv(in_channels, quarter, groups)
            self.conv5x5_2 = ConvBNAct(quarter, quarter, 3, groups=groups)
            self.conv7x7_2 = ConvBNAct(quarter, quarter, 3, groups=groups, activation="relu")
            self.conv7x7_3 = ConvBNAct(quarter, quarter, 3, groups=groups)
        else:
            raise ValueError(f"unknown SSH style {style!r}; use 'plain', 'deformable' or 'grouped'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv3x3(x)
        b1 = self.conv5x5_1(x)
        b = self.conv5x5_2(b1)
        c = self.conv7x7_3(self.conv7x7_2(b1))
        return torch.relu(torch.cat([a, b, c], dim=1))


class LevelContext(nn.Module):
    """One context module per pyramid level (no sharing between levels)."""

    def __init__(self, channels: int, style: str, levels: int = 3):
        super().__init__()
        self.levels = nn.ModuleList(SSH(channels, channels, style) for _ in range(levels))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [module(x) for module, x in zip(self.levels, features)]


CONTEXT_STYLES = {"ssh": "plain", "deformable_ssh": "deformable", "grouped_ssh": "grouped"}
