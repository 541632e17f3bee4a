"""MixUp and CutMix for detection batches (the V2 thesis recipe; off unless configured).

Both work on a collated batch: images float32 [B, 3, S, S] (BGR minus mean) and a list
of normalised targets [n_i, 15]. Each image i is mixed with a partner image p(i) != i
(a random cyclic pairing), and the targets are mixed with it:

- MixUp: image = lam * A + (1 - lam) * B, lam ~ Beta(alpha, alpha) (alpha 0.2); the
  labels mix as y = lam * y_A + (1 - lam) * y_B (003_v2_technical_report.md, 3.2): the
  targets are A's faces followed by B's faces, with per-face weights lam for A's and
  1 - lam for B's, which `MultiBoxLoss(target_weights=...)` applies.
- CutMix: a rectangle of B (area fraction 1 - lam, lam ~ Beta(alpha, alpha)) is pasted
  into A at the same place. B's faces are clipped to the rectangle and kept when at least
  `min_visible_fraction` of their area remains; A's faces are dropped when more than
  `max_covered_fraction` of their area is covered. Landmarks that end up on the wrong
  side of the rectangle edge make that face a "no landmarks" face (label -1). The label
  mixing is geometric here (each kept face is really visible), so CutMix faces weigh 1.

`mix_batch(images, targets, config, rng)` decides sample by sample: CutMix with
probability `cutmix_probability` (0.5 in the report: "appliqué à 50% des échantillons"),
else MixUp with probability `mixup_probability` / (1 - cutmix_probability), i.e.
`mixup_probability` of all samples; the rest are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch


@dataclass(frozen=True)
class MixConfig:
    mixup_probability: float = 0.0     # share of samples mixed with MixUp; 0 = off (the default)
    cutmix_probability: float = 0.0    # share of samples mixed with CutMix; 0 = off (the default)
    mixup_alpha: float = 0.2
    cutmix_alpha: float = 1.0
    min_visible_fraction: float = 0.4  # CutMix: keep a pasted face if this much of it remains
    max_covered_fraction: float = 0.6  # CutMix: drop a face of A if more than this is covered

    def __post_init__(self):
        for name in ("mixup_probability", "cutmix_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"MixConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.mixup_probability + self.cutmix_probability > 1 + 1e-9:
            raise ValueError(f"MixConfig: mixup_probability + cutmix_probability must be at most 1 (a sample is "
                             f"mixed one way), got {self.mixup_probability} + {self.cutmix_probability}")

    @property
    def enabled(self) -> bool:
        return self.mixup_probability > 0 or self.cutmix_probability > 0


# The report states CutMix's share (0.5) but no MixUp probability: MixUp takes the other half.
V2_THESIS_MIX = MixConfig(mixup_probability=0.5, cutmix_probability=0.5, mixup_alpha=0.2)


class MixedBatch(NamedTuple):
    images: torch.Tensor
    targets: list[torch.Tensor]
    target_weights: list[torch.Tensor] | None   # per-face loss weights; None when no face was reweighted
    methods: list[str | None]                   # per sample: "mixup", "cutmix" or None
    partners: np.ndarray | None = None          # per sample: the image it was mixed with


def partner_indices(batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """A random pairing with no image paired with itself (for batch size >= 2)."""
    order = rng.permutation(batch_size)
    partner = np.empty(batch_size, dtype=np.int64)
    partner[order] = np.roll(order, -1)
    return partner


def _mixup_weights(lam: float, targets_a: torch.Tensor, targets_b: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.full((targets_a.shape[0],), lam), torch.full((targets_b.shape[0],), 1.0 - lam)])


def mixup_batch(images: torch.Tensor, targets: list[torch.Tensor], rng: np.random.Generator,
                alpha: float = 0.2, ratio: float | None = None):
    """MixUp of every image with one lam; returns (images, targets, target_weights, lam).
    `ratio` fixes lam instead of drawing it."""
    batch = images.shape[0]
    if batch < 2:
        return images, list(targets), [torch.ones(t.shape[0]) for t in targets], 1.0
    lam = float(rng.beta(alpha, alpha)) if ratio is None else float(ratio)
    partner = partner_indices(batch, rng)
    mixed = lam * images + (1.0 - lam) * images[torch.from_numpy(partner)]
    mixed_targets = [torch.cat([targets[i], targets[partner[i]]], dim=0) for i in range(batch)]
    weights = [_mixup_weights(lam, targets[i], targets[partner[i]]) for i in range(batch)]
    return mixed, mixed_targets, weights, lam


def _box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def _landmarks_inside(targets: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    points = targets[:, 4:14].reshape(-1, 5, 2)
    return ((points >= region[:2]) & (points <= region[2:])).all(dim=2).all(dim=1)


def cutmix_region(size: tuple[int, int], lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A rectangle (x1, y1, x2, y2) in pixels covering about 1 - lam of an image of size (H, W)."""
    height, width = size
    cut = np.sqrt(1.0 - lam)
    cut_w, cut_h = int(round(width * cut)), int(round(height * cut))
    cx, cy = int(rng.integers(width)), int(rng.integers(height))
    x1, x2 = np.clip([cx - cut_w // 2, cx + cut_w - cut_w // 2], 0, width)
    y1, y2 = np.clip([cy - cut_h // 2, cy + cut_h - cut_h // 2], 0, height)
    return int(x1), int(y1), int(x2), int(y2)


def cutmix_targets(targets_a: torch.Tensor, targets_b: torch.Tensor, region_normalised: torch.Tensor,
                   min_visible_fraction: float = 0.4, max_covered_fraction: float = 0.6) -> torch.Tensor:
    """Targets of A with a region of B pasted in (all coordinates normalised)."""
    region = region_normalised.to(targets_a.dtype)
    # A: drop the faces mostly hidden by the patch; a landmark under the patch is no longer visible.
    a = targets_a.clone()
    overlap = a[:, :4].clone()
    overlap[:, :2] = torch.maximum(overlap[:, :2], region[:2])
    overlap[:, 2:] = torch.minimum(overlap[:, 2:], region[2:])
    covered = _box_area(overlap) / _box_area(a[:, :4]).clamp(min=1e-12)
    a = a[covered <= max_covered_fraction]
    points = a[:, 4:14].reshape(-1, 5, 2)
    under_patch = ((points > region[:2]) & (points < region[2:])).all(dim=2).any(dim=1)
    a[under_patch & (a[:, 14] > 0), 4:14] = -1.0
    a[under_patch & (a[:, 14] > 0), 14] = -1.0
    # B: clip to the patch, keep what is mostly visible.
    b = targets_b.clone()
    original_area = _box_area(b[:, :4]).clamp(min=1e-12)
    b[:, :2] = torch.maximum(b[:, :2], region[:2])
    b[:, 2:4] = torch.minimum(b[:, 2:4], region[2:])
    visible = _box_area(b[:, :4]) / original_area
    b = b[(visible >= min_visible_fraction) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]
    lost = (b[:, 14] > 0) & ~_landmarks_inside(b, region)
    b[lost, 4:14] = -1.0
    b[lost, 14] = -1.0
    return torch.cat([a, b], dim=0)


def cutmix_batch(images: torch.Tensor, targets: list[torch.Tensor], rng: np.random.Generator,
                 alpha: float = 1.0, min_visible_fraction: float = 0.4, max_covered_fraction: float = 0.6,
                 ratio: float | None = None):
    """CutMix; returns (images, targets, lam) where lam is the share of each image left from A."""
    batch, _, height, width = images.shape
    if batch < 2:
        return images, list(targets), 1.0
    lam = float(rng.beta(alpha, alpha)) if ratio is None else float(ratio)
    partner = partner_indices(batch, rng)
    mixed = images.clone()
    mixed_targets = []
    for i in range(batch):
        x1, y1, x2, y2 = cutmix_region((height, width), lam, rng)
        mixed[i, :, y1:y2, x1:x2] = images[partner[i], :, y1:y2, x1:x2]
        region = torch.tensor([x1 / width, y1 / height, x2 / width, y2 / height])
        mixed_targets.append(cutmix_targets(targets[i], targets[partner[i]], region,
                                            min_visible_fraction, max_covered_fraction))
    return mixed, mixed_targets, lam


def mix_batch(images: torch.Tensor, targets: list[torch.Tensor], config: MixConfig,
              rng: np.random.Generator) -> MixedBatch:
    """Mix each sample with its partner by CutMix, MixUp or not at all (see the module docstring)."""
    batch, _, height, width = images.shape
    if not config.enabled or batch < 2:
        return MixedBatch(images, list(targets), None, [None] * batch)
    partner = partner_indices(batch, rng)
    draws = rng.uniform(size=batch)
    methods = ["cutmix" if u < config.cutmix_probability
               else "mixup" if u < config.cutmix_probability + config.mixup_probability else None for u in draws]
    # the draws on the host, in sample order (the RNG stream of a per-sample loop); the pixels in a few
    # batch-wide operations on the images' device
    mixup_rows, mixup_lams, cutmix_boxes = [], [], {}
    mixed_targets, weights = [], []
    for i, method in enumerate(methods):
        a, b = targets[i], targets[partner[i]]
        if method == "mixup":
            lam = float(rng.beta(config.mixup_alpha, config.mixup_alpha))
            mixup_rows.append(i)
            mixup_lams.append(lam)
            mixed_targets.append(torch.cat([a, b], dim=0))
            weights.append(_mixup_weights(lam, a, b))
        elif method == "cutmix":
            lam = float(rng.beta(config.cutmix_alpha, config.cutmix_alpha))
            x1, y1, x2, y2 = cutmix_region((height, width), lam, rng)
            cutmix_boxes[i] = (x1, y1, x2, y2)
            region = torch.tensor([x1 / width, y1 / height, x2 / width, y2 / height])
            mixed_targets.append(cutmix_targets(a, b, region, config.min_visible_fraction,
                                                config.max_covered_fraction))
            weights.append(torch.ones(mixed_targets[-1].shape[0]))
        else:
            mixed_targets.append(a)
            weights.append(torch.ones(a.shape[0]))
    mixed = images.clone()
    if mixup_rows:
        rows = torch.tensor(mixup_rows, device=images.device)
        partners = torch.tensor([int(partner[i]) for i in mixup_rows], device=images.device)
        lam = torch.tensor(mixup_lams, dtype=images.dtype, device=images.device).view(-1, 1, 1, 1)
        mixed[rows] = lam * images[rows] + (1.0 - lam) * images[partners]
    for i, (x1, y1, x2, y2) in cutmix_boxes.items():
        mixed[i, :, y1:y2, x1:x2] = images[partner[i], :, y1:y2, x1:x2]
    return MixedBatch(mixed, mixed_targets, weights if "mixup" in methods else None, methods, partner)
