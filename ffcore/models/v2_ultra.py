"""`featherface_v2_ultra`: FeatherFace V2 at 20 channels plus five cheap techniques.

The fork's README announces this model with a parameter count and "five zero/low-parameter
techniques". In the fork the techniques were kept in a plain dict, so they were never
trained, saved or moved to the device. Here every technique is an `nn.Module` registered
under `model.techniques` (an `nn.ModuleDict`): its parameters, if any, are in
`state_dict()`, follow `.to()` and receive gradients, and `ffcore params` counts them.
The parameter count is measured from this code; see `ffcore params`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ffcore.anchors import DEFAULT_PRIORS, PriorConfig
from ffcore.models.attention import SharedCBAM
from ffcore.models.backbone import MobileNetV1x025
from ffcore.models.context import SSH
from ffcore.models.necks import BiFPN, BiFPNLightCell
from ffcore.models.registry import config_with_overrides, register_model
from ffcore.models.shuffle import ChannelShuffleLight
from ffcore.models.vit_parts import flatten_per_anchor

# Parts in forward order (the techniques interleave with them; see `FeatherFaceV2Ultra.forward`).
ULTRA_PARTS = ("backbone", "backbone_attention", "neck", "neck_attention", "context", "shuffle", "techniques")


def _resize(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=reference.shape[-2:], mode="nearest")


# -------------------------------------------------------------------------------- techniques

class MultiScaleIntelligence(nn.Module):
    """Parameter-free scale fusion: every level receives the mean of the other levels,
    resized (nearest) to its grid: x_l <- x_l + mean_{k != l} resize(x_k). 0 parameters."""

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs = []
        for index, target in enumerate(features):
            others = [_resize(x, target) for k, x in enumerate(features) if k != index]
            outputs.append(target + torch.stack(others, dim=0).mean(dim=0))
        return outputs


class AttentionMultiplication(nn.Module):
    """A second, parameter-free attention multiplied onto the CBAM-attended features
    (SimAM's energy, Yang et al. 2021): per channel, with mean mu and variance var over the
    positions, x <- x * sigmoid((x - mu)^2 / (4 (var + lambda)) + 0.5). Positions that stand
    out from their channel's mean are amplified. 0 parameters (lambda is a constant)."""

    def __init__(self, regulariser: float = 1e-4):
        super().__init__()
        self.regulariser = regulariser

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs = []
        for x in features:
            squared = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)
            variance = squared.mean(dim=(2, 3), keepdim=True)
            energy = squared / (4.0 * (variance + self.regulariser)) + 0.5
            outputs.append(x * torch.sigmoid(energy))
        return outputs


class SmartFeatureReuse(nn.Module):
    """Reuse of the features that entered the context module: x <- context(x) + x, a skip
    connection around each level's SSH so the attended neck features reach the heads
    directly. 0 parameters."""

    def forward(self, context_outputs: list[torch.Tensor], context_inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [out + reused for out, reused in zip(context_outputs, context_inputs)]


class ProgressiveEnhancement(nn.Module):
    """Iterative refinement with tied weights: after a level's channel-shuffle block has
    produced y_0, it is applied again `steps` times as a residual update,
    y_{t+1} = y_t + block(y_t). More computation, 0 new parameters (the block's are reused;
    the block is passed in at call time so its weights are registered once, under `shuffle`)."""

    def __init__(self, steps: int = 1):
        super().__init__()
        if steps < 0:
            raise ValueError(f"ProgressiveEnhancement steps must be >= 0, got {steps}")
        self.steps = steps

    def forward(self, x: torch.Tensor, block: nn.Module) -> torch.Tensor:
        for _ in range(self.steps):
            x = x + block(x)
        return x


class DynamicWeightSharing(nn.Module):
    """One set of detection convs shared by the three levels, modulated per level.

    Level l's features are scaled and shifted channel-wise, x * gamma_l + beta_l (gamma
    starts at 1, beta at 0), then go through the shared 1x1 convs for class (2), box (4) and
    landmarks (10) per anchor. Parameters: the shared convs plus 2 x channels x levels.
    Outputs are NHWC-flattened per level and concatenated P3, P4, P5 (the priors' order).
    """

    def __init__(self, channels: int, anchors: int, levels: int = 3):
        super().__init__()
        self.level_scale = nn.Parameter(torch.ones(levels, channels))
        self.level_shift = nn.Parameter(torch.zeros(levels, channels))
        self.cls = nn.Conv2d(channels, anchors * 2, 1)
        self.box = nn.Conv2d(channels, anchors * 4, 1)
        self.landmark = nn.Conv2d(channels, anchors * 10, 1)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        locs, confs, landms = [], [], []
        for level, x in enumerate(features):
            x = x * self.level_scale[level][None, :, None, None] + self.level_shift[level][None, :, None, None]
            locs.append(flatten_per_anchor(self.box(x), 4))
            confs.append(flatten_per_anchor(self.cls(x), 2))
            landms.append(flatten_per_anchor(self.landmark(x), 10))
        return torch.cat(locs, dim=1), torch.cat(confs, dim=1), torch.cat(landms, dim=1)


# ---------------------------------------------------------------------------------- model

@dataclass(frozen=True)
class UltraConfig:
    """The fork's V2 Ultra settings: V2's pipeline at 20 channels, SSH without groups
    (20 channels split 10:5:5, which 4 groups cannot divide), CBAM reduction 128.

    shuffle_groups is 2 because V2's light shuffle halves the width (20 -> 10), which 4
    groups cannot divide either. progressive_steps is the number of tied refinement passes.
    """

    channels: int = 20
    neck_repeats: int = 2
    cbam_reduction: int = 128
    ssh_groups: int = 1
    shuffle_groups: int = 2
    progressive_steps: int = 1
    priors: PriorConfig = DEFAULT_PRIORS


class FeatherFaceV2Ultra(nn.Module):
    """FeatherFace V2 Ultra, in forward order:

    backbone (MobileNet-0.25) -> backbone_attention (shared CBAM) -> neck (BiFPN_Light)
    -> multi_scale_intelligence -> neck_attention (shared CBAM) -> attention_multiplication
    -> context (SSH per level) -> smart_feature_reuse -> shuffle (light channel shuffle)
    -> progressive_enhancement -> dynamic_weight_sharing (the shared heads).

    The five techniques are registered in `self.techniques` (an `nn.ModuleDict`); see each
    class for what it computes. Follows the model contract of docs/design.md.
    """

    parts = ULTRA_PARTS

    def __init__(self, config: UltraConfig = UltraConfig()):
        super().__init__()
        self.config = config
        self.prior_config = config.priors
        self.name = "featherface_v2_ultra"
        self.overrides: dict = {}
        width = config.channels
        self.backbone = MobileNetV1x025()
        self.backbone_attention = SharedCBAM(tuple(self.backbone.feature_channels), reduction=config.cbam_reduction)
        self.neck = BiFPN(tuple(self.backbone.feature_channels), width, config.neck_repeats, BiFPNLightCell)
        self.neck_attention = SharedCBAM((width,) * 3, reduction=config.cbam_reduction)
        self.context = nn.ModuleList(SSH(width, width, "grouped", groups=config.ssh_groups) for _ in range(3))
        self.shuffle = nn.ModuleList(ChannelShuffleLight(width, groups=config.shuffle_groups) for _ in range(3))
        self.techniques = nn.ModuleDict({
            "smart_feature_reuse": SmartFeatureReuse(),
            "attention_multiplication": AttentionMultiplication(),
            "progressive_enhancement": ProgressiveEnhancement(config.progressive_steps),
            "multi_scale_intelligence": MultiScaleIntelligence(),
            "dynamic_weight_sharing": DynamicWeightSharing(width, config.priors.anchors_per_location),
        })

    def forward(self, x: torch.Tensor, return_features: bool = False):
        t = self.techniques
        features = self.backbone_attention(self.backbone(x))
        features = t["multi_scale_intelligence"](self.neck(features))
        features = t["attention_multiplication"](self.neck_attention(features))
        features = t["smart_feature_reuse"]([ssh(f) for ssh, f in zip(self.context, features)], features)
        features = [t["progressive_enhancement"](block(f), block) for block, f in zip(self.shuffle, features)]
        loc, conf, landm = t["dynamic_weight_sharing"](features)
        if return_features:
            return loc, conf, landm, features
        return loc, conf, landm


def build_ultra(**overrides) -> FeatherFaceV2Ultra:
    return FeatherFaceV2Ultra(config_with_overrides(UltraConfig(), overrides, "featherface_v2_ultra"))


@register_model("featherface_v2_ultra",
                "FeatherFace V2 Ultra: V2 at 20 ch, ungrouped SSH, CBAM reduction 128, five registered techniques")
def featherface_v2_ultra(**overrides) -> FeatherFaceV2Ultra:
    return build_ultra(**overrides)
