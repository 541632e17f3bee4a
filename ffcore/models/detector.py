"""The detector assembly: backbone -> backbone attention -> neck -> neck attention ->
context -> shuffle -> heads, each part chosen by name in a frozen `DetectorConfig`.

Variants are `dataclasses.replace` of a preset (see `ffcore.models.zoo`), and
`create_model("featherface_v1", neck="bifpn_light")` overrides any field by keyword.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
import torch.nn as nn

from ffcore.anchors import DEFAULT_PRIORS, PriorConfig
from ffcore.models.attention import ATTENTIONS
from ffcore.models.backbone import BACKBONES
from ffcore.models.blocks import DropBlock2d
from ffcore.models.context import CONTEXT_STYLES, LevelContext
from ffcore.models.heads import HEADS
from ffcore.models.necks import NECKS, build_neck
from ffcore.models.shuffle import SHUFFLES, LevelShuffle

NONE = "none"

# Parts in forward order; `parameter_counts` in ffcore.complexity reports one row per part.
PARTS = ("backbone", "backbone_attention", "neck", "neck_attention", "context", "shuffle", "heads")


def config_with_overrides(preset, overrides: dict, what: str = "model"):
    """`dataclasses.replace(preset, **overrides)`, with an error listing the valid fields for unknown keys."""
    known = {f.name for f in fields(preset)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown {what} option(s) {', '.join(unknown)}; "
                        f"{type(preset).__name__} fields are: {', '.join(sorted(known))}")
    return replace(preset, **overrides)


@dataclass(frozen=True)
class DetectorConfig:
    """Which part sits at each stage, by name ("none" skips an optional stage).

    backbone: "mobilenet_v1_025"; backbone_attention / neck_attention: "none", "cbam"
    (V1, one CBAM per level), "shared_cbam" (V2 manager); neck: "fpn", "bifpn" (V1, 3 cells),
    "bifpn_light" (V2, 2 cells); neck_repeats overrides the cell count; context: "ssh",
    "deformable_ssh" (V1), "grouped_ssh" (V2); shuffle: "none", "shuffle" (V1),
    "shuffle_light" (V2); head: "task_heads" (RetinaFace/V1), "shared_heads" (V2).
    Everything after the backbone runs at `neck_channels`. dropblock_prob > 0 puts a
    `DropBlock2d(dropblock_prob, dropblock_size)` on the three backbone outputs (after the
    backbone attention), active in training only: no parameters, eval output unchanged.
    """

    backbone: str = "mobilenet_v1_025"
    backbone_attention: str = NONE
    neck: str = "fpn"
    neck_channels: int = 64
    neck_repeats: int | None = None
    neck_attention: str = NONE
    context: str = "ssh"
    shuffle: str = NONE
    head: str = "task_heads"
    priors: PriorConfig = DEFAULT_PRIORS
    dropblock_prob: float = 0.0
    dropblock_size: int = 3

    def __post_init__(self):
        choices = {
            "backbone": tuple(BACKBONES), "backbone_attention": (NONE, *ATTENTIONS), "neck": NECKS,
            "neck_attention": (NONE, *ATTENTIONS), "context": tuple(CONTEXT_STYLES),
            "shuffle": (NONE, *SHUFFLES), "head": tuple(HEADS),
        }
        for field_name, allowed in choices.items():
            value = getattr(self, field_name)
            if value not in allowed:
                raise ValueError(f"DetectorConfig.{field_name}={value!r} is not a known part; "
                                 f"choose one of {', '.join(allowed)}")
        if self.neck_channels % 4:
            raise ValueError(f"neck_channels must be a multiple of 4 (SSH splits it 2:1:1), got {self.neck_channels}")
        if not 0.0 <= self.dropblock_prob < 1.0:
            raise ValueError(f"dropblock_prob must be in [0, 1), got {self.dropblock_prob}")


def _attention(name: str, channels: tuple[int, ...]) -> nn.Module | None:
    return None if name == NONE else ATTENTIONS[name](channels)


class Detector(nn.Module):
    """A face detector following the model contract of docs/design.md."""

    def __init__(self, config: DetectorConfig):
        super().__init__()
        self.config = config
        self.prior_config = config.priors
        self.name = "custom"
        self.overrides: dict = {}
        self.backbone = BACKBONES[config.backbone]()
        self.backbone_attention = _attention(config.backbone_attention, tuple(self.backbone.feature_channels))
        self.dropblock = (DropBlock2d(config.dropblock_prob, config.dropblock_size)
                          if config.dropblock_prob > 0 else None)
        width = config.neck_channels
        self.neck = build_neck(config.neck, tuple(self.backbone.feature_channels), width, config.neck_repeats)
        self.neck_attention = _attention(config.neck_attention, (width,) * 3)
        self.context = LevelContext(width, CONTEXT_STYLES[config.context])
        self.shuffle = None if config.shuffle == NONE else LevelShuffle(width, SHUFFLES[config.shuffle])
        self.heads = HEADS[config.head](width, anchors=config.priors.anchors_per_location)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        features = self.backbone(x)
        if self.backbone_attention is not None:
            features = self.backbone_attention(features)
        if self.dropblock is not None:
            features = [self.dropblock(f) for f in features]
        features = self.neck(features)
        if self.neck_attention is not None:
            features = self.neck_attention(features)
        features = self.context(features)
        if self.shuffle is not None:
            features = self.shuffle(features)
        loc, conf, landm = self.heads(features)
        if return_features:
            return loc, conf, landm, features
        return loc, conf, landm


def build_detector(preset: DetectorConfig, **overrides) -> Detector:
    """A `Detector` from a preset with keyword overrides of `DetectorConfig` fields."""
    return Detector(config_with_overrides(preset, overrides))
