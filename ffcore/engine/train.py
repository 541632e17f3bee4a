"""`train(config) -> TrainResult` and the `ffcore train` command.

    from ffcore.engine import train, get_preset
    result = train(get_preset("synthetic_cpu", data_root="data/synthetic", out_dir="runs/v1_synth"))
    result.final_ap, result.best_checkpoint, result.metrics_frame()

Under `torchrun --nproc_per_node=N -m ffcore train ...` the same call runs DDP.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ffcore.anchors import DEFAULT_PRIORS
from ffcore.engine.config import TrainConfig, get_preset
from ffcore.engine.distributed import setup_distributed, teardown_distributed
from ffcore.engine.trainer import LAST_CHECKPOINT, Trainer, TrainResult, seed_everything
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


# ------------------------------------------------------------------------------------------ CLI

def config_from_cli(preset: str, out: str, resume: bool, overrides: dict[str, Any],
                    config_type=TrainConfig, config_key: str = "train_config") -> TrainConfig:
    """The preset (or, on --resume, the saved recipe) with the options given on the command line."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    last = Path(out) / LAST_CHECKPOINT
    if resume and last.is_file():
        from ffcore.checkpoint import load_checkpoint_file

        base = config_type.from_dict(load_checkpoint_file(last)[config_key])
    else:
        base = get_preset(preset)
    return replace(base, out_dir=str(out), **overrides)


def parse_scale(value: str | int | None):
    if value is None or isinstance(value, int):
        return value
    return int(value) if str(value).isdigit() else str(value)


def report(result: TrainResult) -> int:
    import os

    if int(os.environ.get("RANK", "0")) != 0:     # under torchrun only rank 0 reports
        return 0 if result.ok else 3
    if not result.ok:
        print(f"error: {result.message}", file=sys.stderr)
        return 3
    print(f"done: {result.epochs_completed} epochs; last {result.last_checkpoint}; best {result.best_checkpoint}; "
          f"metrics {result.metrics_csv}" + (f"; AP {result.final_ap}" if result.final_ap else ""))
    return 0


def train_command(model: str | None = None, preset: str = "featherface_paper", data: str | None = None,
                  out: str = "runs/train", epochs: int | None = None, batch_size: int | None = None,
                  lr: float | None = None, image_size: int | None = None, workers: int | None = None,
                  device: str | None = None, resume: bool = False, seed: int | None = None,
                  weight_decay: float | None = None, val_every: int | None = None, val_scale: str | None = None,
                  val_data: str | None = None, best_metric: str | None = None, mixup_prob: float | None = None,
                  cutmix_prob: float | None = None, amp: bool = False,
                  pretrained_backbone: str | None = None, no_amp: bool = False,
                  max_steps_per_epoch: int | None = None, skip_unreadable_images: bool | None = None,
                  **_ignored) -> int:
    """`ffcore train`: returns 0 on success, 3 when the loss diverged (the last good checkpoint is kept)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    backbone = None
    if pretrained_backbone is not None:
        backbone = False if pretrained_backbone.lower() in ("none", "false", "no") else pretrained_backbone
    config = config_from_cli(preset, out, resume, {
        "model": model, "data_root": data, "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "image_size": image_size, "workers": workers, "device": device, "seed": seed,
        "weight_decay": weight_decay, "val_every": val_every, "val_scale": parse_scale(val_scale),
        "val_root": val_data, "best_metric": best_metric, "mixup_prob": mixup_prob, "cutmix_prob": cutmix_prob,
        "pretrained_backbone": backbone, "amp": True if amp else (False if no_amp else None),
        "max_steps_per_epoch": max_steps_per_epoch, "skip_unreadable_images": skip_unreadable_images})
    return report(train(config, resume=resume))
