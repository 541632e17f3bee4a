"""Channel-shuffle blocks applied to each level after the context module."""

from __future__ import annotations

import torch
import torch.nn as nn

from ffcore.models.blocks import ConvBNAct, channel_shuffle


class ChannelShuffleBlock(nn.Module):
    """FeatherFace V1: shuffle (2 groups, "alternative" order) -> 1x1 c->c/2 -> BN ->
    depthwise 3x3 -> BN -> 1x1 c/2->c -> BN -> ReLU (no activation in between)."""

    def __init__(self, channels: int):
        super().__init__()
        hidden = channels // 2
        self.reduce = ConvBNAct(channels, hidden, 1)
        self.depthwise = ConvBNAct(hidden, hidden, 3, groups=hidden)
        self.expand = ConvBNAct(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = channel_shuffle(x, 2, "alternative")
        return torch.relu(self.expand(self.depthwise(self.reduce(x))))


class ChannelShuffleLight(nn.Module):
    """FeatherFace V2: shuffle (4 groups, standard order) -> grouped 1x1 c->c/2 -> BN -> ReLU
    -> grouped 1x1 c/2->c -> BN -> ReLU."""

    def __init__(self, channels: int, groups: int = 4):
        super().__init__()
        self.groups = groups
        self.reduce = ConvBNAct(channels, channels // 2, 1, groups=groups, activation="relu")
        self.expand = ConvBNAct(channels // 2, channels, 1, groups=groups, activation="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.reduce(channel_shuffle(x, self.groups, "standard")))


class LevelShuffle(nn.Module):
    def __init__(self, channels: int, block: type[nn.Module], levels: int = 3):
        super().__init__()
        self.levels = nn.ModuleList(block(channels) for _ in range(levels))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [module(x) for module, x in zip(self.levels, features)]




class ChannelShuffleOnly(nn.Module):
    """The fork's 52-channel models: the 2-group "alternative" shuffle alone, no parameters."""

    def __init__(self, channels: int, groups: int = 2):
        super().__init__()
        if channels % groups:
            raise ValueError(f"channel shuffle: {channels} channels do not split into {groups} groups")
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups, "alternative")


SHUFFLES = {"shuffle": ChannelShuffleBlock, "shuffle_light": ChannelShuffleLight,
            "channel_shuffle": ChannelShuffleOnly}
