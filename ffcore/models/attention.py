"""CBAM attention (FeatherFace V1), the shared CBAM manager (FeatherFace V2) and the
thesis fork's ECA-CBAM modules (sequential and parallel).

V1 and V2 apply attention residually on each pyramid level: x <- ReLU(x + attention(x));
the fork's models apply it directly: x <- attention(x).
"""

from __future__ import annotations

import math
from typing import Callable

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




# ----------------------------------------------------- the fork's attention (f023145)
# The thesis author's fork replaces V1's attention with ECA (channel) and SAM (spatial)
# and applies every attention module directly, x <- attention(x), without V1's residual
# ReLU(x + attention(x)): that is what its forward computes and what its trained weights expect.

def eca_kernel_size(channels: int, gamma: int = 2, beta: int = 1) -> int:
    """ECA's adaptive kernel (Wang et al. 2020): int(|log2(C)/gamma + beta/gamma|), made odd by +1.

    3 for 52 and 64 channels, 5 for 128 and 256.
    """
    size = int(abs(math.log2(channels) / gamma + beta / gamma))
    return size if size % 2 else size + 1


class ECA(nn.Module):
    """Efficient channel attention: global average pool -> Conv1d(1, 1, k) across channels -> sigmoid."""

    def __init__(self, channels: int, gamma: int = 2, beta: int = 1):
        super().__init__()
        kernel = eca_kernel_size(channels, gamma, beta)
        self.conv = nn.Conv1d(1, 1, kernel, padding=(kernel - 1) // 2, bias=False)

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """The channel mask M_c, [B, C, 1, 1]."""
        pooled = x.mean(dim=(2, 3)).unsqueeze(1)                  # [B, 1, C]: channels are the 1-D axis
        return torch.sigmoid(self.conv(pooled)).squeeze(1)[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask(x)


class SAM(nn.Module):
    """CBAM's spatial attention as the fork builds it: [mean; max] over channels -> 7x7 conv -> sigmoid.

    Unlike V1's `SpatialGate` it has no BatchNorm and stacks the mean first.
    """

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """The spatial mask M_s, [B, 1, H, W]."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask(x)


class ECACBAM(nn.Module):
    """ECA then SAM in sequence: the spatial mask is computed on the channel-gated tensor."""

    def __init__(self, channels: int):
        super().__init__()
        self.eca = ECA(channels)
        self.sam = SAM()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sam(self.eca(x))


class ECACBAMParallel(nn.Module):
    """ECA and SAM computed from the same input, applied as one product mask: y = x * (M_c * M_s)."""

    def __init__(self, channels: int):
        super().__init__()
        self.eca = ECA(channels)
        self.sam = SAM()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.eca.mask(x) * self.sam.mask(x))


class LevelAttention(nn.Module):
    """One attention module per level applied directly, x <- attention(x) (the fork's placement)."""

    def __init__(self, channels: tuple[int, ...], block: Callable[[int], nn.Module]):
        super().__init__()
        self.levels = nn.ModuleList(block(c) for c in channels)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [attention(x) for x, attention in zip(features, self.levels)]


def _level_attention(block: Callable[[int], nn.Module]) -> Callable[[tuple[int, ...]], LevelAttention]:
    def build(channels: tuple[int, ...]) -> LevelAttention:
        return LevelAttention(channels, block)

    return build


# name -> builder(channels per level); DetectorConfig.*_attention choose among these names.
ATTENTIONS: dict[str, Callable[[tuple[int, ...]], nn.Module]] = {
    "cbam": LevelCBAM,
    "shared_cbam": SharedCBAM,
    "cbam_direct": _level_attention(CBAM),             # the fork's CBAM-exact: V1's CBAM without the residual
    "eca_cbam": _level_attention(ECACBAM),
    "eca_cbam_parallel": _level_attention(ECACBAMParallel),
}
