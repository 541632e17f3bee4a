"""Detection heads: 1x1 convs with bias per level for class (2), box (4) and landmarks (10).

Outputs are permuted to NHWC and flattened, so within a level the prior index is
(row * cols + col) * anchors + anchor; levels are concatenated P3, P4, P5 -- the order of
`ffcore.anchors.make_priors`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

OUTPUTS = (("cls", 2), ("box", 4), ("landmark", 10))


def _flatten(x: torch.Tensor, per_anchor: int) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, per_anchor)


class TaskHeads(nn.Module):
    """RetinaFace / FeatherFace V1 layout: one list of per-level convs for each task."""

    def __init__(self, channels: int, anchors: int = 2, levels: int = 3):
        super().__init__()
        self.cls = nn.ModuleList(nn.Conv2d(channels, anchors * 2, 1) for _ in range(levels))
        self.box = nn.ModuleList(nn.Conv2d(channels, anchors * 4, 1) for _ in range(levels))
        self.landmark = nn.ModuleList(nn.Conv2d(channels, anchors * 10, 1) for _ in range(levels))

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loc = torch.cat([_flatten(h(x), 4) for h, x in zip(self.box, features)], dim=1)
        conf = torch.cat([_flatten(h(x), 2) for h, x in zip(self.cls, features)], dim=1)
        landm = torch.cat([_flatten(h(x), 10) for h, x in zip(self.landmark, features)], dim=1)
        return loc, conf, landm


class LevelHead(nn.Module):
    def __init__(self, channels: int, anchors: int = 2):
        super().__init__()
        self.cls = nn.Conv2d(channels, anchors * 2, 1)
        self.box = nn.Conv2d(channels, anchors * 4, 1)
        self.landmark = nn.Conv2d(channels, anchors * 10, 1)


class SharedHeads(nn.Module):
    """FeatherFace V2 layout ("shared_heads"): one module per level holding its three convs.

    Same computation and parameter count as `TaskHeads` at equal width; kept as its own
    part because V2's weights are organised this way.
    """

    def __init__(self, channels: int, anchors: int = 2, levels: int = 3):
        super().__init__()
        self.levels = nn.ModuleList(LevelHead(channels, anchors) for _ in range(levels))

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loc = torch.cat([_flatten(h.box(x), 4) for h, x in zip(self.levels, features)], dim=1)
        conf = torch.cat([_flatten(h.cls(x), 2) for h, x in zip(self.levels, features)], dim=1)
        landm = torch.cat([_flatten(h.landmark(x), 10) for h, x in zip(self.levels, features)], dim=1)
        return loc, conf, landm


HEADS = {"task_heads": TaskHeads, "shared_heads": SharedHeads}
