"""CBAM attention (FeatherFace V1) and the shared CBAM manager (FeatherFace V2).

Both are applied residually on each pyramid level: x <- ReLU(x + attention(x)).
"""

from __future__ import annotations

import torch
import torch.nn as nn


class ChannelGate(nn.Module):
    """One MLP applied to the global average and max pools; sum -> sigmoid -> scale channels."""

    def __init__(self, channels: int, hidden: int, bias: bool):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(channels, hidden, bias=bias), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, channels, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        return x * torch.sigmoid(logits)[:, :, None, None]


class SpatialGate(nn.Module):
    """Channel-wise max and mean maps -> 7x7 conv -> BN -> sigmoid -> scale positions.

    `max_first=True` stacks [max, mean] (V1, the original CBAM); V2 stacks [mean, max].
    The order matters for loading trained weights of either model.
    """

    def __init__(self, max_first: bool, kernel_size: int = 7):
        super().__init__()
        self.max_first = max_first
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel_max = x.amax(dim=1, keepdim=True)
        channel_mean = x.mean(dim=1, keepdim=True)
        pooled = torch.cat([channel_max, channel_mean] if self.max_first else [channel_mean, channel_max], dim=1)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


class CBAM(nn.Module):
    """Channel gate then spatial gate (Woo et al. 2018), as in FeatherFace V1."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.channel_gate = ChannelGate(channels, channels // reduction, bias=True)
        self.spatial_gate = SpatialGate(max_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial_gate(self.channel_gate(x))


class LevelCBAM(nn.Module):
    """One independent CBAM per level, applied residually (FeatherFace V1)."""

    def __init__(self, channels: tuple[int, ...], reduction: int = 16):
        super().__init__()
        self.levels = nn.ModuleList(CBAM(c, reduction) for c in channels)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.relu(x + cbam(x)) for x, cbam in zip(features, self.levels)]


class SharedCBAM(nn.Module):
    """FeatherFace V2's CBAM manager: a channel gate per level, one spatial gate for all.

    Channel MLPs have no bias and max(c / reduction, min_hidden) hidden units.
    """

    def __init__(self, channels: tuple[int, ...], reduction: int = 32, min_hidden: int = 4):
        super().__init__()
        self.channel_gates = nn.ModuleList(ChannelGate(c, max(c // reduction, min_hidden), bias=False)
                                           for c in channels)
        self.spatial_gate = SpatialGate(max_first=False)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.relu(x + self.spatial_gate(gate(x))) for x, gate in zip(features, self.channel_gates)]


ATTENTIONS = {"cbam": LevelCBAM, "shared_cbam": SharedCBAM}
