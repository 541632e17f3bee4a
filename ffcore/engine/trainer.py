"""The training loop shared by `train` and `distill`: data, optimisation, AMP, DDP, checkpoints, logs.

What is trained is described by a `TrainingTask` (the module to optimise, the deployed
detector inside it, and how a batch becomes loss terms). `Trainer.run()` does the rest:

- resumable: `last.pt` after every epoch carries model, optimiser, scheduler, AMP scaler,
  RNG states, history and best value; every epoch re-seeds its RNGs from (seed, epoch,
  rank) and the data pipeline draws from per-sample generators, so training 2 epochs and
  training 1 + resuming 1 give identical weights;
- `best.pt` by validation AP (`best_metric`), or by training loss without validation;
- a non-finite loss stops the run cleanly: nothing is saved for the broken epoch, the
  last good `last.pt` stays, the log and the returned `TrainResult` say so;
- so does a training image that is missing or cannot be decoded (the message names it and
  its annotation line), unless `skip_unreadable_images` is set: then it is skipped, logged
  and counted (`skipped_images` in the metrics and the result);
- DDP under torchrun (DistributedSampler with set_epoch); only rank 0 writes.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ffcore.anchors import DEFAULT_PRIORS, make_priors
from ffcore.checkpoint import CheckpointError, load_checkpoint_file, save_checkpoint
from ffcore.data.ground_truth import SETTINGS
from ffcore.engine.config import BEST_METRICS, TrainConfig, recipe_differences
from ffcore.engine.distributed import (DistributedContext, all_gather_objects, all_reduce_sum, barrier,
                                       broadcast_buffers, broadcast_object)
from ffcore.engine.run_log import RunLogger
from ffcore.engine.schedules import build_optimizer, build_scheduler

LAST_CHECKPOINT = "last.pt"
# what a resume reads from last.pt
RESUME_KEYS = ("train_config", "state_dict", "optimizer", "scheduler", "scaler", "epoch", "best_metric")
BEST_CHECKPOINT = "best.pt"


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


class TrainingTask(Protocol):
    module: nn.Module          # everything that is optimised (wrapped in DDP)
    model: nn.Module           # the deployed detector (saved as `state_dict`)

    def loss_terms(self, module: nn.Module, images: torch.Tensor, targets: list[torch.Tensor],
                   priors: torch.Tensor, target_weights: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Loss terms of a batch, including "total" (what is back-propagated). `target_weights`:
        per-face loss weights (MixUp's lam), None when every face weighs 1."""

    def extra_state(self) -> dict[str, Any]:
        """Checkpoint entries beside the deployed model (e.g. distillation adapters)."""

    def load_extra_state(self, payload: dict[str, Any]) -> None:
        ...

    # Optional: `begin_epoch(epoch, epochs)` is called before each epoch (0-based), for tasks
    # whose loss follows a schedule over epochs (progressive distillation).


@dataclass
class TrainResult:
    """What a run produced. `model` is the trained detector (rank 0's, unwrapped, in eval mode)."""

    out_dir: Path
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    metrics_csv: Path | None
    history: list[dict]
    final_ap: dict[str, float] | None
    best_value: float | None
    epochs_completed: int
    status: str = "completed"              # completed | diverged | unreadable_image
    message: str = ""
    model: nn.Module | None = field(default=None, repr=False)
    skipped_images: int = 0                # unreadable images skipped (skip_unreadable_images)

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def metrics_frame(self):
        """The per-epoch metrics as a pandas DataFrame (same content as metrics.csv)."""
        import pandas as pd

        return pd.DataFrame(self.history)

    def raise_for_status(self) -> "TrainResult":
        if self.status == "unreadable_image":
            from ffcore.data.datasets import UnreadableImageError

            raise UnreadableImageError(self.message)
        if not self.ok:
            raise TrainingDivergedError(self.message)
        return self


# ----------------------------------------------------------------------------------------- data

def build_train_dataset(config: TrainConfig, root: Path):
    """The training set of a WIDER-format root (RetinaFace label.txt with landmarks preferred)."""
    from ffcore.data.layout import WiderFaceLayout
    from ffcore.data.transforms import TrainTransform, TrainTransformConfig

    layout = WiderFaceLayout.find(root, need=("train",))
    # uint8 out of the loader; the trainer subtracts the mean on the device (`normalise_batch`)
    transform = TrainTransform(TrainTransformConfig(image_size=config.image_size, normalise=False))
    # skipping unreadable images covers missing ones too: they are then counted as met, not refused up front
    return layout.train_dataset(transform=transform, seed=config.seed, prefer_landmarks=True,
                                check_images=not config.skip_unreadable_images)


def resolve_data_root(config: TrainConfig) -> Path:
    from ffcore.paths import default_widerface_root

    root = Path(config.data_root) if config.data_root else default_widerface_root()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root not found: {root} (set data_root / --data; "
                                f"`ffcore synth` writes a synthetic dataset)")
    return root


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + rank * 101) % (2 ** 31)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _rng_state() -> dict:
    # Plain types and tensors only, so the checkpoint reads with the safe loader (ffcore.checkpoint).
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                            "pos": int(numpy_state["state"]["pos"])}
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):      # version-1 checkpoints hold numpy's legacy tuple instead
        key = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
        numpy_state = {**numpy_state, "state": {**numpy_state["state"], "key": key}}
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    restore_cuda_rng_states(state.get("cuda") or [])


def restore_cuda_rng_states(saved: list, visible: int | None = None) -> int:
    """Restore the CUDA generators that both the checkpoint and this machine have; returns how many.

    A checkpoint holds one state per GPU visible when it was written, and a run may resume on a
    machine (or under CUDA_VISIBLE_DEVICES) with more, fewer or none: device i gets saved state i
    for i < min(saved, visible), and the rest keep their seeds. Every epoch re-seeds all generators
    from (seed, epoch, rank) before it draws anything, so the weights do not depend on it."""
    if visible is None:
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    restored = min(len(saved), visible)
    for index in range(restored):
        torch.cuda.set_rng_state(saved[index], device=index)
    return restored


def _eta(wall_time_s: float, epochs_done: int, epochs: int) -> str:
    """The run's time left at its mean wall time per epoch so far (validations included)."""
    seconds = (epochs - epochs_done) * wall_time_s / max(1, epochs_done)
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


@dataclass
class _LoopState:
    """What the phases of one `Trainer.run` share: data, the optimised module and its optimiser, the history."""

    dataset: Any
    sampler: Any
    loader: Any
    steps_per_epoch: int
    module: nn.Module              # what is optimised (task.module, SyncBatchNorm-converted under DDP)
    trained: nn.Module             # what the loss calls: `module`, or its DDP wrapper
    optimizer: Any
    scheduler: Any
    scaler: Any
    priors: torch.Tensor
    mix_config: Any
    start_epoch: int
    history: list[dict]
    best_value: float | None
    wall_start: float


@dataclass
class _EpochRun:
    """Running sums of one epoch, and why it stopped early if it did."""

    started: float
    sums: dict[str, float] = field(default_factory=dict)
    images_seen: int = 0
    steps_done: int = 0
    skipped: int = 0
    failure: dict[str, float] | None = None       # the loss terms when one was not finite
    unreadable_failure: list | int | None = None  # this rank's records, or the count on other ranks
    failure_step: int = 0
    steps_planned: int = 0
    pending: Any = None          # device sums of the steps not yet read on the host (sync_every_steps)
    pending_steps: int = 0

    @property
    def stopped(self) -> bool:
        return self.failure is not None or self.unreadable_failure is not None

    def images_per_second(self) -> float:
        return self.images_seen / max(time.perf_counter() - self.started, 1e-9)


# -------------------------------------------------------------------------------------- trainer

class Trainer:
    def __init__(self, config: TrainConfig, task: TrainingTask, context: DistributedContext,
                 checkpoint_fields: dict[str, Any] | None = None, kind: str = "train"):
        self.config = config
        self.task = task
        self.context = context
        self.kind = kind
        self.checkpoint_fields = dict(checkpoint_fields or {})
        self.out_dir = Path(config.out_dir)
        self.device = context.device
        if config.amp_dtype not in ("float16", "bfloat16"):
            raise ValueError(f"amp_dtype must be float16 or bfloat16, got {config.amp_dtype!r}")
        # What the epochs really ran in: float16 autocast exists on CUDA only, bfloat16 on CUDA and CPU.
        self.amp_dtype = torch.bfloat16 if config.amp_dtype == "bfloat16" else torch.float16
        self.use_amp = bool(config.amp and (self.device.type == "cuda" or self.amp_dtype == torch.bfloat16))
        self.precision = f"amp_{config.amp_dtype}" if self.use_amp else "fp32"
        if config.channels_last:
            self.precision += "+channels_last"
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = bool(config.cudnn_benchmark)

    # -- set-up
    def _data(self):
        from ffcore.data.datasets import collate_reporting_unreadable

        dataset = build_train_dataset(self.config, resolve_data_root(self.config))
        # Workers hand unreadable samples back as records; the loop stops or skips (one decision for all ranks).
        dataset.report_unreadable = True
        if self.context.enabled:
            sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=self.context.world_size,
                                                          rank=self.context.rank, shuffle=True,
                                                          seed=self.config.seed)
            per_rank = len(sampler)
        else:
            sampler = torch.utils.data.RandomSampler(dataset, generator=torch.Generator())
            per_rank = len(dataset)
        from ffcore.data.datasets import EpochTaggedSampler

        workers = self.config.workers
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=self.config.batch_size, sampler=EpochTaggedSampler(sampler), num_workers=workers,
            collate_fn=collate_reporting_unreadable, pin_memory=self.device.type == "cuda",
            # the epoch travels with each index, so loader processes may live across epochs
            persistent_workers=bool(self.config.persistent_workers and workers > 0),
            prefetch_factor=self.config.prefetch_factor if workers > 0 else None,
            # the loader's base seed comes from its own generator, not the global RNG that the model's
            # DropBlock draws from: whether loader processes are restarted each epoch or persist then
            # changes nothing in training
            generator=torch.Generator().manual_seed(self.config.seed),
            drop_last=per_rank > self.config.batch_size)   # no batch of one for BatchNorm, unless that is all
        return dataset, sampler, loader

    def _mix_config(self):
        if self.config.mixup_prob <= 0 and self.config.cutmix_prob <= 0:
            return None
        from ffcore.data.mixing import MixConfig

        return MixConfig(mixup_probability=self.config.mixup_prob, cutmix_probability=self.config.cutmix_prob,
                         mixup_alpha=self.config.mixup_alpha)

    def _validate_settings(self) -> None:
        if self.config.best_metric not in BEST_METRICS:
            raise ValueError(f"best_metric must be one of {BEST_METRICS}, got {self.config.best_metric!r}")
        if self.config.best_metric in SETTINGS and self.config.val_every <= 0:
            raise ValueError(f"best_metric={self.config.best_metric!r} needs validation (val_every > 0); "
                             f"set val_every or best_metric='loss'")
        if self.config.val_every > 0:
            # fail now, not after the first epoch, when the validation tree is incomplete
            from ffcore.data.layout import WiderFaceLayout

            WiderFaceLayout.find(self._val_root(), need=("val", "val_gt"))

    def _val_root(self) -> Path:
        return Path(self.config.val_root) if self.config.val_root else resolve_data_root(self.config)

    # -- validation
    def _validate(self, model: nn.Module) -> dict[str, float]:
        """AP on the validation tree. Under DDP every rank predicts its shard of the images and rank 0
        evaluates the union (the same files and protocol as one process); call on every rank."""
        from ffcore.eval.sharded import evaluate_shards, predict_shard

        root = self._val_root()
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                shard = predict_shard(model, root, self.context.rank, self.context.world_size,
                                      scale=self.config.val_scale, device=self.device,
                                      batch_size=self.config.val_batch_size)
        finally:
            model.train(was_training)
        shards = all_gather_objects(shard, self.context)
        if not self.context.is_main:
            return {}
        result = evaluate_shards(shards, root)
        return {setting: float(result.ap[setting]) for setting in SETTINGS if setting in result.ap}

    # -- checkpoints
    def _payload(self, epoch: int, optimizer, scheduler, scaler, history, best_value, git) -> dict:
        model = self.task.model
        return {
            "model_name": getattr(model, "name", self.config.model),
            "model_overrides": dict(getattr(model, "overrides", self.config.model_overrides)),
            "state_dict": model.state_dict(),
            "kind": self.kind,
            "train_config": self.config.to_dict(),
            "epoch": epoch,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "metrics": history[-1] if history else {},
            "history": history,
            "best_metric": {"name": self.config.best_metric, "value": best_value},
            "git_commit": git.get("commit"),
            "git_dirty": git.get("dirty"),
            "rng_state": _rng_state(),
            "world_size": self.context.world_size,
            "precision": self.precision,
            **self.task.extra_state(),
            **self.checkpoint_fields,
        }

    def _resume(self, optimizer, scheduler, scaler) -> tuple[int, list[dict], float | None]:
        path = self.out_dir / LAST_CHECKPOINT
        if not path.is_file():
            raise CheckpointError(f"cannot resume: {path} does not exist (train without --resume first)")
        payload = load_checkpoint_file(path, map_location="cpu")
        missing = [key for key in RESUME_KEYS if key not in payload]
        if missing:
            raise CheckpointError(f"cannot resume {path}: it lacks {', '.join(missing)}, so it is not a last.pt this "
                                  f"trainer wrote whole; delete it to train the run from scratch")
        saved = TrainConfig.from_dict(payload["train_config"])
        diffs = recipe_differences(saved, self.config)
        if diffs:
            listed = ", ".join(f"{k}: saved {a!r} vs requested {b!r}" for k, (a, b) in diffs.items())
            raise CheckpointError(f"cannot resume {path}: the recipe differs ({listed}). Resume with the saved "
                                  f"settings or start a new run in another folder.")
        saved_world = int(payload.get("world_size", 1))
        if saved_world != self.context.world_size and not self.config.allow_world_size_change:
            raise CheckpointError(
                f"cannot resume {path}: it was trained by {saved_world} process(es) and this launch has "
                f"{self.context.world_size}; the global batch (batch_size x processes) and the schedule's steps per "
                f"epoch would change. Launch with --nproc_per_node={saved_world}, or accept the change with "
                f"allow_world_size_change (--allow-world-size-change), which the run's log records.")
        self.task.model.load_state_dict(payload["state_dict"])
        self.task.load_extra_state(payload)
        if payload.get("initialisation"):
            self.checkpoint_fields.setdefault("initialisation", payload["initialisation"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        scaler.load_state_dict(payload["scaler"])
        if payload.get("rng_state"):
            _set_rng_state(payload["rng_state"])
        return int(payload["epoch"]), list(payload.get("history", [])), payload["best_metric"]["value"]

    # -- the loop
    def run(self, resume: bool = False) -> TrainResult:
        from ffcore.report.provenance import git_state

        self._validate_settings()
        main = self.context.is_main
        logger = RunLogger(self.out_dir, enabled=main, tensorboard=self.config.tensorboard)
        try:
            return self._run(resume, logger, git_state() if main else {})
        finally:
            logger.close()

    def _run(self, resume: bool, logger: RunLogger, git: dict) -> TrainResult:
        run = self._setup(resume, logger)
        status, message = "completed", ""
        epochs_completed = run.start_epoch
        for epoch in range(run.start_epoch, self.config.epochs):
            epoch_run = self._train_epoch(run, epoch, logger)
            if epoch_run.stopped:
                status, message = self._stop_report(epoch, epoch_run)
                if self.context.is_main:
                    logger.message(message, level=40)
                break
            row = self._epoch_row(run, epoch, epoch_run)
            run.history.append(row)
            improved = self._update_best(run, row)
            epochs_completed = epoch + 1
            self._checkpoint(run, epoch, row, improved, git, logger)
            if self._stop_requested(epoch, logger):
                break
        return self._result(run, status, message, epochs_completed, logger)

    # -- set-up and resume
    def _setup(self, resume: bool, logger: RunLogger) -> _LoopState:
        """Data, module, optimiser, scheduler, scaler (restored from last.pt on resume), priors."""
        config, context, device = self.config, self.context, self.device
        seed_everything(_epoch_seed(config.seed, -1, 0))
        dataset, sampler, loader = self._data()
        steps_per_epoch = len(loader) if config.max_steps_per_epoch is None else min(len(loader),
                                                                                   config.max_steps_per_epoch)
        if steps_per_epoch == 0:
            raise ValueError(f"no training batches: {len(dataset)} images for batch size {config.batch_size}")

        module = self.task.module.to(device, memory_format=self.memory_format)
        if context.enabled and config.sync_batchnorm:
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        optimizer = build_optimizer(module.parameters(), config)
        scheduler = build_scheduler(optimizer, config, steps_per_epoch)
        # loss scaling is for float16 only: bfloat16 has float32's exponent range
        scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)

        start_epoch, history, best_value = 0, [], None
        if resume:
            start_epoch, history, best_value = self._resume(optimizer, scheduler, scaler)
            logger.message(f"resumed from {self.out_dir / LAST_CHECKPOINT} after epoch {start_epoch}, "
                           f"world size {context.world_size}")
        module.train()
        trained = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None) if context.enabled else module

        prior_config = getattr(self.task.model, "prior_config", DEFAULT_PRIORS)
        priors = make_priors(config.image_size, config.image_size, prior_config, device=device)
        if context.is_main:
            logger.message(f"{self.kind}: model {config.model}, {len(dataset)} images, {steps_per_epoch} steps/epoch, "
                           f"epochs {start_epoch}->{config.epochs}, device {device}, world size {context.world_size}, "
                           f"precision {self.precision}")
            if hasattr(dataset, "report") and getattr(dataset.report, "dropped_boxes", 0):
                logger.message(dataset.report.summary())
        # a resumed run's wall time continues from the saved history
        wall_start = time.perf_counter() - (history[-1]["wall_time_s"] if history else 0.0)
        return _LoopState(dataset=dataset, sampler=sampler, loader=loader, steps_per_epoch=steps_per_epoch,
                         module=module, trained=trained, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                         priors=priors, mix_config=self._mix_config(), start_epoch=start_epoch, history=history,
                         best_value=best_value, wall_start=wall_start)

    # -- one epoch of optimisation
    def _begin_epoch(self, run: _LoopState, epoch: int) -> np.random.Generator:
        """Re-seed everything from (seed, epoch, rank), so a resumed run draws what an unbroken one would;
        returns the epoch's MixUp / CutMix generator."""
        config, context = self.config, self.context
        seed_everything(_epoch_seed(config.seed, epoch, context.rank))
        if hasattr(run.dataset, "set_epoch"):
            run.dataset.set_epoch(epoch)
        run.loader.sampler.set_epoch(epoch)
        if isinstance(run.sampler, torch.utils.data.DistributedSampler):
            run.sampler.set_epoch(epoch)
        else:
            run.sampler.generator.manual_seed(_epoch_seed(config.seed, epoch, 0))
        mix_rng = np.random.default_rng([config.seed, epoch, context.rank, 7])
        if hasattr(self.task, "begin_epoch"):
            self.task.begin_epoch(epoch, config.epochs)
        return mix_rng

    def _train_epoch(self, run: _LoopState, epoch: int, logger: RunLogger) -> _EpochRun:
        """The optimisation steps of one epoch; stops early (with the reason) on a non-finite loss or an
        unreadable image that is not to be skipped."""
        config, context = self.config, self.context
        mix_rng = self._begin_epoch(run, epoch)
        outcome = _EpochRun(started=time.perf_counter(), steps_planned=run.steps_per_epoch)
        progress = None
        if context.is_main and config.progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=run.steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                            dynamic_ncols=True)
        for step, (images, targets, unreadable) in enumerate(run.loader):
            if step >= run.steps_per_epoch:
                break
            if images is None:     # no readable image in this batch: nothing to train on
                if config.skip_unreadable_images and not context.enabled:
                    outcome.skipped += self._note_skipped(unreadable, logger)
                    continue
                if context.enabled:   # the other ranks cannot learn of it without a forward pass
                    from ffcore.data.datasets import UnreadableImageError

                    raise UnreadableImageError("no readable image in a batch of rank "
                                               f"{context.rank}: " + "; ".join(u.describe() for u in unreadable))
                outcome.unreadable_failure, outcome.failure_step = unreadable, step
                break
            if not self._train_step(run, outcome, step, images, targets, unreadable, mix_rng, logger):
                break
            if context.is_main and config.log_every_steps and outcome.steps_done % config.log_every_steps == 0:
                logger.message(f"epoch {epoch + 1} step {outcome.steps_done}/{run.steps_per_epoch}: "
                               + ", ".join(f"{k} {v / outcome.steps_done:.4g}" for k, v in outcome.sums.items())
                               + f", {outcome.images_per_second():.2f} images/s")
            if progress is not None:
                progress.set_postfix({**{k: f"{v / (step + 1):.3f}" for k, v in outcome.sums.items()},
                                      "img/s": f"{outcome.images_per_second():.1f}"})
                progress.update(1)
        if progress is not None:
            progress.close()
        return outcome

    def _train_step(self, run: _LoopState, outcome: _EpochRun, step: int, images, targets, unreadable,
                    mix_rng: np.random.Generator, logger: RunLogger) -> bool:
        """One batch: loss terms (averaged over ranks), then the update unless the epoch must stop.
        Returns False when it must (recorded in `outcome`)."""
        config, context, device = self.config, self.context, self.device
        from ffcore.data.transforms import normalise_batch

        # uint8 from the loader; the mean is subtracted, and the batch mixed, on the device
        images = images.to(device, non_blocking=True)
        images = normalise_batch(images) if images.dtype == torch.uint8 else images.float()
        target_weights = None
        if run.mix_config is not None:
            from ffcore.data.mixing import mix_batch

            images, targets, target_weights, _, _ = mix_batch(images, targets, run.mix_config, mix_rng)
        images = images.contiguous(memory_format=self.memory_format)
        targets = [t.to(device, non_blocking=True) for t in targets]
        if target_weights is not None:
            target_weights = [w.to(device, non_blocking=True) for w in target_weights]
        with torch.autocast(device_type=device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            terms = self.task.loss_terms(run.trained, images, targets, run.priors, target_weights=target_weights)
        total = terms["total"]
        # the unreadable count rides along with the losses, so every rank takes the same decision
        values = torch.stack([t.detach().float() for t in terms.values()]
                             + [torch.tensor(float(len(unreadable)), device=device)])
        all_reduce_sum(values, context)
        values = values / torch.tensor([float(context.world_size)] * (len(values) - 1) + [1.0], device=device)
        if not self._sync_now(outcome, unreadable):
            # no host synchronisation on this step: the checks run on the accumulated sums every
            # sync_every_steps steps (a failure then stops the run, the last good checkpoint kept)
            self._update(run, total)
            outcome.pending = values.double() if outcome.pending is None else outcome.pending + values.double()
            outcome.pending_steps += 1
            outcome.images_seen += images.shape[0] * context.world_size
            outcome.steps_done += 1
            return True
        if outcome.pending is not None:
            values_checked = outcome.pending + values.double()
            steps_checked = outcome.pending_steps + 1
        else:
            values_checked, steps_checked = values.double(), 1
        unreadable_here = int(values_checked[-1].item())
        values = values[:-1]
        if unreadable_here and not config.skip_unreadable_images:
            outcome.unreadable_failure, outcome.failure_step = unreadable or unreadable_here, step
            return False
        outcome.skipped += self._note_skipped(unreadable, logger) if unreadable_here else 0
        if not torch.isfinite(values_checked[:-1]).all():
            outcome.failure = {name: float(v) for name, v in zip(terms, values.tolist())}
            outcome.failure_step = step
            return False
        self._update(run, total)
        sums = values_checked[:-1].tolist() if steps_checked == 1 else None
        if sums is None:   # the steps accumulated since the last check, then this one
            sums = (outcome.pending[:-1] + values.double()).tolist()
        for name, value in zip(terms, sums):
            outcome.sums[name] = outcome.sums.get(name, 0.0) + value
        outcome.pending, outcome.pending_steps = None, 0
        outcome.images_seen += images.shape[0] * context.world_size
        outcome.steps_done += 1
        return True

    def _sync_now(self, outcome: "_EpochRun", unreadable: list) -> bool:
        """Whether this step reads its losses on the host (every `sync_every_steps` steps, at the last step
        of the epoch, and whenever this process met an unreadable image)."""
        every = max(1, int(self.config.sync_every_steps))
        last = outcome.steps_done + 1 >= outcome.steps_planned
        # under DDP every rank must check at the same steps: a rank's own unreadable image waits for them
        met_unreadable = bool(unreadable) and not self.context.enabled
        return every == 1 or last or met_unreadable or (outcome.steps_done + 1) % every == 0

    def _update(self, run: _LoopState, total: torch.Tensor) -> None:
        config = self.config
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(total).backward()
        if config.grad_clip_norm:
            run.scaler.unscale_(run.optimizer)
            nn.utils.clip_grad_norm_(run.module.parameters(), config.grad_clip_norm)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.scheduler.step()

    # -- stopping
    def _stop_report(self, epoch: int, outcome: _EpochRun) -> tuple[str, str]:
        """(status, message) of a run stopped inside `epoch` by a non-finite loss or an unreadable image."""
        last = self.out_dir / LAST_CHECKPOINT
        kept = (f"the last good checkpoint {last} (epoch {epoch}) was kept" if epoch > 0 and last.exists()
                else "no checkpoint had been written yet")
        where = f"at epoch {epoch + 1}, step {outcome.failure_step + 1}"
        if outcome.unreadable_failure is not None:
            failure = outcome.unreadable_failure
            named = ("; ".join(u.describe() for u in failure) if isinstance(failure, list)
                     else f"{failure} image(s) on another process (see its log)")
            return "unreadable_image", (
                f"unreadable training image {where}: {named}; training stopped, {kept}. Replace the image or "
                f"remove its annotation, or set skip_unreadable_images (--skip-unreadable-images) to skip and "
                f"count such images.")
        return "diverged", (f"non-finite loss {where}: " + ", ".join(f"{k}={v}" for k, v in outcome.failure.items())
                            + f"; training stopped, {kept}. Lower the learning rate (--lr), clip the gradients "
                              f"(grad_clip_norm: `ffcore train ... --grad-clip-norm 5` in a new run folder), "
                              f"or check the data.")

    def _stop_requested(self, epoch: int, logger: RunLogger) -> bool:
        """`stop_after_epoch`: end this invocation after `epoch` (a time-boxed job, resumed later)."""
        stop_after = self.config.stop_after_epoch
        if stop_after is None or epoch + 1 < stop_after:
            return False
        if self.context.is_main and epoch + 1 < self.config.epochs:
            logger.message(f"stopping after epoch {epoch + 1} as configured; continue with resume")
        return True

    # -- validation and the epoch's metrics
    def _epoch_row(self, run: _LoopState, epoch: int, outcome: _EpochRun) -> dict[str, Any]:
        """The epoch's metrics row: lr, mean losses, AP when validating, skipped images, timings."""
        config, context = self.config, self.context
        broadcast_buffers(run.module, context)
        epoch_time = time.perf_counter() - outcome.started
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": run.optimizer.param_groups[0]["lr"],
                               "precision": self.precision}
        row.update({("loss" if k == "total" else f"loss_{k}"): v / max(1, outcome.steps_done)
                    for k, v in outcome.sums.items()})
        row.update({f"ap_{s}": None for s in SETTINGS} if config.val_every > 0 else {})
        validate_now = config.val_every > 0 and ((epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs)
        if validate_now:
            aps = broadcast_object(self._validate(self.task.model), context)
            row.update({f"ap_{k}": v for k, v in aps.items()})
        if config.skip_unreadable_images:
            row["skipped_images"] = int(all_reduce_sum(torch.tensor([float(outcome.skipped)], device=self.device),
                                                       context)[0].item())
        row["epoch_time_s"] = epoch_time
        row["images_per_s"] = outcome.images_seen / max(epoch_time, 1e-9)
        row["wall_time_s"] = time.perf_counter() - run.wall_start
        return row

    def _update_best(self, run: _LoopState, row: dict[str, Any]) -> bool:
        """Whether `row` improves on the best value so far (lower loss, or higher AP); updates it if so."""
        metric = self.config.best_metric
        if metric == "final":       # every epoch replaces best.pt: the run's last epoch is what it keeps
            run.best_value = row.get("epoch")
            return True
        if metric == "loss":
            current = row.get("loss")
            improved = current is not None and (run.best_value is None or current < run.best_value)
        elif row.get(f"ap_{metric}") is not None:
            current = row[f"ap_{metric}"]
            improved = run.best_value is None or current > run.best_value
        else:
            return False
        if improved:
            run.best_value = current
        return improved

    # -- checkpoints and logs
    def _checkpoint(self, run: _LoopState, epoch: int, row: dict[str, Any], improved: bool, git: dict,
                    logger: RunLogger) -> None:
        """last.pt (and best.pt when improved), metrics.csv, scalars and the epoch's log line; rank 0 writes."""
        if self.context.is_main:
            payload = self._payload(epoch + 1, run.optimizer, run.scheduler, run.scaler, run.history,
                                    run.best_value, git)
            save_checkpoint(self.out_dir / LAST_CHECKPOINT, payload)
            if improved:
                save_checkpoint(self.out_dir / BEST_CHECKPOINT, payload)
            logger.write_history(run.history)
            logger.scalars({k: v for k, v in row.items() if k != "epoch" and isinstance(v, (int, float))},
                           epoch + 1, prefix=self.kind)
            shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float) and k != "wall_time_s")
            logger.message(f"epoch {epoch + 1}/{self.config.epochs}: {shown}" + (" (best)" if improved else "")
                           + f", ETA {_eta(row['wall_time_s'], epoch + 1, self.config.epochs)}")
        barrier(self.context)

    # -- the result
    def _result(self, run: _LoopState, status: str, message: str, epochs_completed: int,
                logger: RunLogger) -> TrainResult:
        self.task.model.eval()
        final_ap = None
        for row in reversed(run.history):
            if row.get("ap_easy") is not None:
                final_ap = {s: row[f"ap_{s}"] for s in SETTINGS if row.get(f"ap_{s}") is not None}
                break
        last = self.out_dir / LAST_CHECKPOINT
        best = self.out_dir / BEST_CHECKPOINT
        if self.context.is_main and status == "completed":
            logger.message(f"finished: {epochs_completed} epochs, best {self.config.best_metric} {run.best_value}, "
                           f"checkpoints in {self.out_dir}")
        return TrainResult(out_dir=self.out_dir, last_checkpoint=last if last.exists() else None,
                           best_checkpoint=best if best.exists() else None,
                           metrics_csv=logger.metrics_path if logger.metrics_path.exists() else None,
                           history=run.history, final_ap=final_ap, best_value=run.best_value,
                           epochs_completed=epochs_completed, status=status, message=message,
                           model=self.task.model,
                           skipped_images=int(sum(row.get("skipped_images", 0) for row in run.history)))

    @staticmethod
    def _note_skipped(unreadable: list, logger: RunLogger) -> int:
        """Log the images skipped by this process (skip_unreadable_images); returns how many."""
        for record in unreadable:
            logger.message(f"skipped unreadable training image {record.describe()}", level=30)
        return len(unreadable)
