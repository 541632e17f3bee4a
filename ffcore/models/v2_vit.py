"""`featherface_v2_vit`: the project overview's FeatherFace V2 target architecture.

UltraEfficientViT backbone (linear attention, outputs of 32 / 64 / 128 channels at
strides 8 / 16 / 32) -> PyramidAttentionFusion neck (cross-scale attention, separable
convs) -> DynamicChannelAttention -> SharedDetectionHead with nine anchors per cell
(three sizes x three aspect ratios, `VIT_PRIORS`). The parts live in
`ffcore.models.vit_parts`; their parameter counts are measured by `ffcore params`.

The overview lists DynamicChannelAttention after the head; channel attention on the
head's logits would only rescale predictions, so here it re-weights the channels of the
features that enter the shared head (those are also the features `return_features` gives).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ffcore.anchors import PriorConfig
from ffcore.models.detector import config_with_overrides
from ffcore.models.registry import register_model
from ffcore.models.vit_parts import (DynamicChannelAttention, PyramidAttentionFusion, PyramidAttentionFusionConfig,
                                     SharedDetectionHead, UltraEfficientViT, UltraEfficientViTConfig)

# Three sizes per level spanning the reference anchors' range (16-32, 64-128, 256-512 px),
# times three width/height ratios around 1: face boxes are close to square, so the wide
# object-detection ratios (0.5, 2) would waste anchors.
VIT_PRIORS = PriorConfig(min_sizes=((16, 24, 32), (64, 96, 128), (256, 384, 512)),
                         aspect_ratios=(0.8, 1.0, 1.25))

VIT_PARTS = ("backbone", "neck", "channel_attention", "head")


@dataclass(frozen=True)
class ViTDetectorConfig:
    backbone: UltraEfficientViTConfig = UltraEfficientViTConfig()
    neck_channels: int = 64
    neck_key_dim: int = 16
    neck_cells: int = 3
    attention_hidden: int = 40
    head_depth: int = 2
    priors: PriorConfig = VIT_PRIORS


class FeatherFaceV2ViT(nn.Module):
    """backbone -> neck -> channel_attention -> head; follows docs/design.md's model contract."""

    parts = VIT_PARTS

    def __init__(self, config: ViTDetectorConfig = ViTDetectorConfig()):
        super().__init__()
        self.config = config
        self.prior_config = config.priors
        self.name = "featherface_v2_vit"
        self.overrides: dict = {}
        self.backbone = UltraEfficientViT(config.backbone)
        self.neck = PyramidAttentionFusion(self.backbone.feature_channels, PyramidAttentionFusionConfig(
            channels=config.neck_channels, key_dim=config.neck_key_dim, cells=config.neck_cells))
        self.channel_attention = DynamicChannelAttention(config.neck_channels, config.attention_hidden)
        self.head = SharedDetectionHead(config.neck_channels, config.priors.anchors_per_location, config.head_depth)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        features = self.channel_attention(self.neck(self.backbone(x)))
        loc, conf, landm = self.head(features)
        if return_features:
            return loc, conf, landm, features
        return loc, conf, landm


def build_vit(**overrides) -> FeatherFaceV2ViT:
    return FeatherFaceV2ViT(config_with_overrides(ViTDetectorConfig(), overrides, "featherface_v2_vit"))


@register_model("featherface_v2_vit",
                "FeatherFace V2 target: UltraEfficientViT, PyramidAttentionFusion, dynamic channel attention, "
                "shared head with 9 anchors per cell")
def featherface_v2_vit(**overrides) -> FeatherFaceV2ViT:
    return build_vit(**overrides)
