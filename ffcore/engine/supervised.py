"""`train(config) -> TrainResult` (the `ffcore train` command is `ffcore.cli.training`).

    from ffcore.engine import get_preset
    from ffcore.engine.supervised import train
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
    """Create a registered model with a seeded initialisation and, when asked, the ImageNet backbone.

    `pretrained_backbone=True` needs the ImageNet MobileNet-0.25 file: when it is missing this is
    an error naming the file, never a silent random start. A random start is `False`, said on
    purpose and recorded in the run's config (`initialisation` in its checkpoints)."""
    from ffcore.models import create_model
    from ffcore.models.loading import has_imagenet_backbone, load_imagenet_backbone, require_imagenet_backbone

    seed_everything(seed)
    model = create_model(name, **dict(overrides))
    backbone = pretrained_backbone if load_backbone else False
    if backbone is True and not has_imagenet_backbone(model):
        log.info("%s has no MobileNet-0.25 backbone: no ImageNet initialisation", name)
        backbone = False
    if backbone:
        load_imagenet_backbone(model, require_imagenet_backbone() if backbone is True else backbone)
    return model


def initialisation(config: TrainConfig) -> str:
    """How a run's weights started, for its checkpoints: the ImageNet file or a random start."""
    from ffcore.models import create_model
    from ffcore.models.loading import has_imagenet_backbone

    if config.pretrained_backbone is False:
        return "random (pretrained_backbone=False)"
    if not has_imagenet_backbone(create_model(config.model, **dict(config.model_overrides))):
        return "random (the model has no MobileNet-0.25 backbone)"
    if config.pretrained_backbone is True:
        from ffcore.models.loading import require_imagenet_backbone

        return f"imagenet ({require_imagenet_backbone().name})"
    return f"imagenet ({config.pretrained_backbone})"


def multibox_loss_for(model: nn.Module, config: TrainConfig) -> MultiBoxLoss:
    prior_config = getattr(model, "prior_config", DEFAULT_PRIORS)
    return MultiBoxLoss(MultiBoxLossConfig(variance=tuple(prior_config.variance), loc_weight=config.loc_weight,
                                           overlap_threshold=config.overlap_threshold))


def train(config: TrainConfig, *, resume: bool = False, model: nn.Module | None = None,
          kind: str = "train") -> TrainResult:
    """Train `config.model` on `config.data_root`; checkpoints and logs go to `config.out_dir`.

    `resume=True` continues exactly from `<out_dir>/last.pt`. A non-finite loss ends the
    run with `result.status == "diverged"` (call `result.raise_for_status()` to raise).
    `model`: an already built detector to train instead of a fresh `config.model` (a pruned
    model fine-tuned from its parent, `kind="finetune"`); its weights are replaced by last.pt's
    on resume. The one way the command line and the study build a trainer.
    """
    context = setup_distributed(config.device, config.dist_timeout_minutes)
    try:
        if model is None:
            model = build_model(config.model, config.model_overrides, config.pretrained_backbone, config.seed,
                                load_backbone=not resume)
            # on resume the start is last.pt's (the trainer carries it over)
            start = {} if resume else {"initialisation": initialisation(config)}
        else:
            start = {"initialisation": f"given model ({kind})"}
        task = DetectionTask(model, multibox_loss_for(model, config))
        return Trainer(config, task, context, checkpoint_fields=start, kind=kind).run(resume=resume)
    finally:
        teardown_distributed(context)
