"""`train(config) -> TrainResult` (the `ffcore train` command is `ffcore.cli.training`).

    from ffcore.engine import get_preset
    from ffcore.engine.train import train
    result = train(get_preset("synthetic_cpu", data_root="data/synthetic", out_dir="runs/v1_synth"))
    result.final_ap, result.best_checkpoint, result.metrics_frame()

Under `torchrun --nproc_per_node=N -m ffcore train ...` the same call runs DDP.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from ffcore.anchors import DEFAULT_PRIORS
from ffcore.engine.config import TrainConfig
from ffcore.engine.distributed import setup_distributed, teardown_distributed
from ffcore.engine.trainer import Trainer, TrainResult, seed_everything
from ffcore.losses import MultiBoxLoss, MultiBoxLossConfig

log = logging.getLogger("ffcore.engine")


class DetectionTask:
    """Plain supervised training: the detector is both what is optimised and what is deployed."""

    def __init__(self, model: nn.Module, loss: MultiBoxLoss):
        self.model = model
        self.module = model
        self.loss = loss

    def loss_terms(self, module, images, targets, priors, target_weights=None) -> dict[str, torch.Tensor]:
        terms = self.loss(predictions=module(images), priors=priors, targets=targets, target_weights=target_weights)
        return {**terms, "total": self.loss.total(terms)}

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, payload: dict[str, Any]) -> None:
        return None


def build_model(name: str, overrides: dict, pretrained_backbone: bool | str, seed: int,
                load_backbone: bool = True) -> nn.Module:
    """Create a registered model with a seeded initialisation and, when asked, the ImageNet backbone."""
    from ffcore.models import create_model
    from ffcore.paths import find_imagenet_backbone

    from ffcore.models.loading import has_imagenet_backbone, load_imagenet_backbone

    seed_everything(seed)
    model = create_model(name, **dict(overrides))
    backbone = pretrained_backbone if load_backbone else False
    if backbone is True and not has_imagenet_backbone(model):
        log.info("%s has no MobileNet-0.25 backbone: no ImageNet initialisation", name)
        backbone = False
    if backbone is True and find_imagenet_backbone() is None:
        log.warning("ImageNet MobileNet-0.25 file not found (weights/ or the shared folder); "
                    "training %s from a random initialisation", name)
        backbone = False
    if backbone:
        load_imagenet_backbone(model, None if backbone is True else backbone)
    return model


def multibox_loss_for(model: nn.Module, config: TrainConfig) -> MultiBoxLoss:
    prior_config = getattr(model, "prior_config", DEFAULT_PRIORS)
    return MultiBoxLoss(MultiBoxLossConfig(variance=tuple(prior_config.variance), loc_weight=config.loc_weight,
                                           overlap_threshold=config.overlap_threshold))


def train(config: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Train `config.model` on `config.data_root`; checkpoints and logs go to `config.out_dir`.

    `resume=True` continues exactly from `<out_dir>/last.pt`. A non-finite loss ends the
    run with `result.status == "diverged"` (call `result.raise_for_status()` to raise).
    """
    context = setup_distributed(config.device)
    try:
        model = build_model(config.model, config.model_overrides, config.pretrained_backbone, config.seed,
                            load_backbone=not resume)
        task = DetectionTask(model, multibox_loss_for(model, config))
        return Trainer(config, task, context, kind="train").run(resume=resume)
    finally:
        teardown_distributed(context)
