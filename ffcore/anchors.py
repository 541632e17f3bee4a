"""Prior (anchor) boxes shared by every detector in the project.

The geometry is defined once here (`PriorConfig`) and passed to both the loss
(encoding) and post-processing (decoding), so the two can never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PriorConfig:
    """Anchor geometry: one level per stride, `min_sizes[k]` x `aspect_ratios` anchors per cell.

    An anchor of size m (pixels) and aspect ratio r (width / height) is m·sqrt(r) wide and
    m / sqrt(r) high, so every ratio keeps the area m². Within a cell the anchors run
    size-major: index = size_index · len(aspect_ratios) + ratio_index. The default single
    ratio 1.0 gives the references' square anchors unchanged.
    """

    min_sizes: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))
    steps: tuple[int, ...] = (8, 16, 32)
    variance: tuple[float, float] = (0.1, 0.2)
    clip: bool = False
    aspect_ratios: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if not self.aspect_ratios or any(r <= 0 for r in self.aspect_ratios):
            raise ValueError(f"aspect_ratios must be a non-empty tuple of positive width/height ratios, "
                             f"got {self.aspect_ratios}")

    @property
    def anchors_per_location(self) -> int:
        counts = {len(sizes) for sizes in self.min_sizes}
        if len(counts) != 1:
            raise ValueError(f"every level needs the same number of anchors, got {self.min_sizes}")
        return counts.pop() * len(self.aspect_ratios)


DEFAULT_PRIORS = PriorConfig()


def feature_map_sizes(height: int, width: int, config: PriorConfig = DEFAULT_PRIORS) -> list[tuple[int, int]]:
    """Grid (rows, cols) of each level: ceil(H / stride) x ceil(W / stride)."""
    return [(math.ceil(height / step), math.ceil(width / step)) for step in config.steps]


def _anchor_shapes(sizes: tuple[int, ...], ratios: tuple[float, ...]) -> tuple[list[float], list[float]]:
    """Widths and heights (pixels) of one cell's anchors, size-major. Ratio 1.0 gives (m, m) exactly."""
    widths, heights = [], []
    for size in sizes:
        for ratio in ratios:
            root = math.sqrt(ratio)
            widths.append(size * root)
            heights.append(size / root)
    return widths, heights


def make_priors(height: int, width: int, config: PriorConfig = DEFAULT_PRIORS,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Priors (cx, cy, w, h), normalised by the image size, shape [P, 4].

    Order is level -> row -> column -> anchor, matching the heads' flattening
    (NHWC permute, then concatenation P3, P4, P5).
    """
    levels = []
    for (rows, cols), step, sizes in zip(feature_map_sizes(height, width, config), config.steps, config.min_sizes):
        ys = (torch.arange(rows, dtype=torch.float32, device=device) + 0.5) * step / height
        xs = (torch.arange(cols, dtype=torch.float32, device=device) + 0.5) * step / width
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        anchor_w, anchor_h = _anchor_shapes(sizes, config.aspect_ratios)
        n_anchor = len(anchor_w)
        cx = cx.reshape(-1, 1).expand(-1, n_anchor)
        cy = cy.reshape(-1, 1).expand(-1, n_anchor)
        w = (torch.tensor(anchor_w, dtype=torch.float32, device=device) / width).expand(rows * cols, -1)
        h = (torch.tensor(anchor_h, dtype=torch.float32, device=device) / height).expand(rows * cols, -1)
        levels.append(torch.stack([cx, cy, w, h], dim=-1).reshape(-1, 4))
    priors = torch.cat(levels, dim=0)
    if config.clip:
        priors = priors.clamp_(0.0, 1.0)
    return priors


def num_priors(height: int, width: int, config: PriorConfig = DEFAULT_PRIORS) -> int:
    """Number of priors for an image of the given size (16,800 at 640x640)."""
    return sum(rows * cols * len(sizes) * len(config.aspect_ratios)
               for (rows, cols), sizes in zip(feature_map_sizes(height, width, config), config.min_sizes))
