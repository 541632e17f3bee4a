"""Training throughput (images/s) of V1, V2 and ECA-CBAM: full step, model alone, data loader alone.

    .venv/bin/python benchmarks/bench_gpu_throughput.py                 # CUDA, 640 px, batch 32 (< 5 min)
    .venv/bin/python benchmarks/bench_gpu_throughput.py --device cpu --steps 3 --size 96 --batch-size 2

The step timed is the trainer's own (`ffcore.engine.trainer.Trainer._train_step`), with the
fast options a GPU run would record in its config: float16 mixed precision (CUDA only;
`--no-amp` turns it off), channels-last memory format (`--no-channels-last`), losses read on
the host every `--sync-every` steps, uint8 batches from `--workers` persistent loader processes
(pinned memory, non-blocking copies) with the mean subtracted on the device. Three numbers per
model, each the median of `--windows` timed windows of `--steps` steps after `--warmup` untimed steps:

- model alone: the trainer's step on one batch from the loader, reused every step (no waiting
  for the loader; the host-to-device copy of the uint8 batch included);
- full step: the same step fed by the DataLoader (what training really sustains);
- data loader alone (once, it does not depend on the model): the training DataLoader with the
  training augmentation, and the same loader with the augmentation replaced by a plain
  pad-to-square + resize, so that the augmentation's own cost per image is the difference.

Data: a WIDER-format root (`--data`; default data/synthetic/throughput, 400 synthetic images
generated when missing).
The fork's ECA-CBAM trained at about 207 images/s (640 px, batch 32; 404 iterations x 350
epochs in 6.2 h, shared/reference/ARCHITECTURES.md): the goal is twice that for the V1 family.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

DEFAULT_MODELS = ("featherface_v1", "featherface_v2", "featherface_eca_cbam")
FORK_REFERENCE_IMAGES_PER_S = 207.0    # ECA-CBAM, 640 px, batch 32 (shared/reference/ARCHITECTURES.md)


@dataclass(frozen=True)
class Recipe:
    device: str
    size: int
    batch: int
    workers: int
    amp: bool
    channels_last: bool
    sync_every: int
    warmup: int
    steps: int
    windows: int

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


class PlainTransform:
    """The training transform without augmentation: pad to square, resize, BGR - mean (no crop,
    no photometric distortion, no mirror, one interpolation). Same outputs' shapes and layout."""

    def __init__(self, image_size: int):
        self.image_size = image_size

    def __call__(self, image: np.ndarray, targets: np.ndarray, rng: np.random.Generator):
        import cv2

        from ffcore.data.transforms import normalise_targets, pad_to_square, to_network_input

        targets = np.asarray(targets, dtype=np.float32).reshape(-1, 15)
        image = pad_to_square(image)
        height, width = image.shape[:2]
        image = cv2.resize(image, (self.image_size, self.image_size), interpolation=cv2.INTER_LINEAR)
        return to_network_input(image), normalise_targets(targets, width, height)


def build_loader(root: Path, recipe: Recipe, augment: bool) -> torch.utils.data.DataLoader:
    from ffcore.data.datasets import detection_collate
    from ffcore.engine.config import get_preset
    from ffcore.engine.trainer import build_train_dataset

    config = get_preset("featherface_paper", image_size=recipe.size, batch_size=recipe.batch, data_root=str(root))
    dataset = build_train_dataset(config, root)
    if not augment:
        dataset.transform = PlainTransform(recipe.size)
    cuda = recipe.device.startswith("cuda")
    # One long pass that covers every batch a measurement draws: a short epoch would end in a
    # pipeline drain and refill that real training, 400 batches an epoch on WIDER FACE, hardly sees.
    batches = recipe.warmup + recipe.steps * recipe.windows + 2
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=batches * recipe.batch,
                                             generator=torch.Generator().manual_seed(0))
    return torch.utils.data.DataLoader(
        dataset, batch_size=recipe.batch, sampler=sampler, num_workers=recipe.workers,
        collate_fn=detection_collate, pin_memory=cuda, drop_last=True,
        persistent_workers=recipe.workers > 0, prefetch_factor=4 if recipe.workers > 0 else None)


def endless(loader):
    """Batches of `loader`, epoch after epoch (the workers persist between epochs)."""
    while True:
        yielded = False
        for batch in loader:
            yielded = True
            yield batch
        if not yielded:
            raise ValueError(f"the loader yields no batch: {len(loader.dataset)} images for batch size "
                             f"{loader.batch_size} (drop_last); use a larger dataset or a smaller --batch-size")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_rate(step, recipe: Recipe, device: torch.device) -> float:
    """Median images/s over `windows` windows of `steps` calls of `step()`, after `warmup` calls."""
    for _ in range(recipe.warmup):
        step()
    _sync(device)
    rates = []
    for _ in range(recipe.windows):
        start = time.perf_counter()
        for _ in range(recipe.steps):
            step()
        _sync(device)
        rates.append(recipe.batch * recipe.steps / (time.perf_counter() - start))
    return statistics.median(rates)


def loader_rate(root: Path, recipe: Recipe, augment: bool) -> float:
    batches = endless(build_loader(root, recipe, augment))
    return timed_rate(lambda: next(batches), recipe, torch.device("cpu"))


def model_rates(name: str, root: Path, recipe: Recipe) -> tuple[float, float]:
    """(model alone, full step) images/s of one registered model, timing the trainer's own step
    (`Trainer._train_step`: uint8 batch to the device, mean subtracted there, autocast, loss, backward,
    optimiser and scheduler step, host reads every `sync_every` steps)."""
    import tempfile

    from ffcore.engine.config import get_preset
    from ffcore.engine.distributed import DistributedContext
    from ffcore.engine.run_log import RunLogger
    from ffcore.engine.supervised import DetectionTask, build_model, multibox_loss_for
    from ffcore.engine.trainer import Trainer, _EpochRun

    device = torch.device(recipe.device)
    with tempfile.TemporaryDirectory(prefix="ffcore_throughput_") as out:
        config = get_preset("featherface_paper", model=name, image_size=recipe.size, batch_size=recipe.batch,
                            data_root=str(root), out_dir=out, workers=recipe.workers, amp=recipe.amp,
                            channels_last=recipe.channels_last, sync_every_steps=recipe.sync_every,
                            prefetch_factor=4, progress=False, tensorboard=False)
        model = build_model(name, {}, False, seed=0)     # the start does not change the step's time
        trainer = Trainer(config, DetectionTask(model, multibox_loss_for(model, config)),
                          DistributedContext(device=device))
        logger = RunLogger(Path(out), enabled=False, tensorboard=False)
        run = trainer._setup(resume=False, logger=logger)
        mix_rng = trainer._begin_epoch(run, 0)
        outcome = _EpochRun(started=time.perf_counter(), steps_planned=10 ** 9)

        def step(batch) -> None:
            images, targets, unreadable = batch
            if not trainer._train_step(run, outcome, outcome.steps_done, images, targets, unreadable, mix_rng,
                                       logger):
                raise RuntimeError(f"{name}: the training step stopped: {outcome.failure}")

        batches = endless(run.loader)
        resident = next(batches)
        alone = timed_rate(lambda: step(resident), recipe, device)
        full = timed_rate(lambda: step(next(batches)), recipe, device)
    return alone, full


def resolve_data(data: str | None) -> Path:
    from ffcore.data.synth import SynthConfig, ensure_synthetic_dataset
    from ffcore.paths import default_synthetic_root

    if data is not None:
        root = Path(data)
        if not root.is_dir():
            raise SystemExit(f"--data {root}: no such folder (a WIDER-format root, or omit it for the synthetic set)")
        return root
    # generated once (about a minute on one core), reused after
    config = SynthConfig(train_images=400, val_images=10)     # photos of 320-640 px on the long side
    return ensure_synthetic_dataset(default_synthetic_root() / "throughput", config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--device", default=None, help="cuda | cpu | cuda:N (default cuda when available)")
    parser.add_argument("--data", default=None, help="WIDER-format root (default: the synthetic dataset)")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None,
                        help="loader processes (default: CPU count, at most 12)")
    parser.add_argument("--no-amp", action="store_true", help="FP32 instead of float16 mixed precision")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--sync-every", type=int, default=10,
                        help="host reads of the losses every N steps (the trainer's sync_every_steps; default 10)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=3)
    args = parser.parse_args(argv)
    if min(args.steps, args.windows, args.batch_size) < 1 or args.warmup < 0 or args.size < 32:
        parser.error("--steps, --windows, --batch-size must be >= 1, --warmup >= 0, --size >= 32")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available on this machine: run with --device cpu (and a tiny --size, --steps) "
              "to check the script, or on a GPU machine for the figures", file=sys.stderr)
        return 2
    workers = args.workers if args.workers is not None else min(12, os.cpu_count() or 1)
    recipe = Recipe(device, args.size, args.batch_size, workers, amp=not args.no_amp,
                    channels_last=not args.no_channels_last, sync_every=args.sync_every, warmup=args.warmup, steps=args.steps,
                    windows=args.windows)
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True

    from ffcore.models import list_models

    registered = set(list_models())
    models = [m for m in args.models if m in registered]
    for name in args.models:
        if name not in registered:
            print(f"skipped {name}: not registered in ffcore.models (registered: {', '.join(sorted(registered))})",
                  file=sys.stderr)
    root = resolve_data(args.data)
    where = (torch.cuda.get_device_name(device) if device.startswith("cuda")
             else f"CPU ({torch.get_num_threads()} threads)")
    precision = "float16 autocast" if recipe.amp and device.startswith("cuda") else "fp32"
    print(f"{where} | {args.size}x{args.size}, batch {args.batch_size}, {precision}, "
          f"{'channels-last' if recipe.channels_last else 'contiguous'}, {workers} loader workers | "
          f"median of {args.windows} windows of {args.steps} steps after {args.warmup} | data {root}", flush=True)

    start = time.perf_counter()
    augmented = loader_rate(root, recipe, augment=True)
    plain = loader_rate(root, recipe, augment=False)
    augmentation_ms = 1e3 * workers_time_per_image(augmented, plain, workers)
    print(f"{'data loader alone':<34} {augmented:9.1f} images/s with the training augmentation, "
          f"{plain:.1f} without (augmentation {augmentation_ms:.2f} ms per image per worker)", flush=True)
    print(f"{'model':<24} {'model alone':>12} {'full step':>12}   (images/s)")
    for name in models:
        alone, full = model_rates(name, root, recipe)
        # A full step clearly slower than the model alone waits for the loader.
        bound = "(loader-bound)" if full < 0.9 * alone else ""
        print(f"{name:<24} {alone:12.1f} {full:12.1f}   x{full / FORK_REFERENCE_IMAGES_PER_S:.2f} the fork's "
              f"{FORK_REFERENCE_IMAGES_PER_S:.0f} images/s {bound}".rstrip(), flush=True)
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0 if models else 1


def workers_time_per_image(augmented_rate: float, plain_rate: float, workers: int) -> float:
    """Seconds of one worker's time the augmentation adds per image (loader rates are for all
    workers together, so each worker's time per image is workers / rate)."""
    parallel = max(workers, 1)
    return parallel / augmented_rate - parallel / plain_rate


if __name__ == "__main__":
    raise SystemExit(main())
