"""Training throughput (images/s) of V1, V2 and ECA-CBAM: full step, model alone, data loader alone.

    .venv/bin/python benchmarks/bench_gpu_throughput.py                 # CUDA, 640 px, batch 32 (< 5 min)
    .venv/bin/python benchmarks/bench_gpu_throughput.py --device cpu --steps 3 --size 96 --batch-size 2

The recipe is the fast one the issue asks for: float16 mixed precision (CUDA only; `--no-amp`
turns it off), channels-last memory format (`--no-channels-last`), `--workers` loader
processes with pinned memory and non-blocking copies. Three numbers per model, each the
median of `--windows` timed windows of `--steps` steps after `--warmup` untimed steps:

- model alone: forward + MultiBoxLoss + backward + AdamW step on one batch already on the
  device (real augmented images and targets from the loader, reused every step);
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
    """(model alone, full step) images/s of one registered model."""
    from ffcore.anchors import DEFAULT_PRIORS, make_priors
    from ffcore.engine.config import get_preset
    from ffcore.engine.schedules import build_optimizer
    from ffcore.engine.train import multibox_loss_for
    from ffcore.models import create_model

    device = torch.device(recipe.device)
    config = get_preset("featherface_paper", image_size=recipe.size, batch_size=recipe.batch)
    model = create_model(name).to(device).to(memory_format=recipe.memory_format).train()
    optimizer = build_optimizer(model.parameters(), config)
    use_amp = recipe.amp and device.type == "cuda"     # float16 autocast exists on CUDA only
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    loss = multibox_loss_for(model, config)
    priors = make_priors(recipe.size, recipe.size, getattr(model, "prior_config", DEFAULT_PRIORS), device=device)

    def to_device(images, targets):
        images = images.to(device, non_blocking=True).contiguous(memory_format=recipe.memory_format)
        return images, [t.to(device, non_blocking=True) for t in targets]

    def train_step(images, targets):
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            terms = loss(predictions=model(images), priors=priors, targets=targets)
            total = loss.total(terms)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()

    batches = endless(build_loader(root, recipe, augment=True))
    resident = to_device(*next(batches))
    alone = timed_rate(lambda: train_step(*resident), recipe, device)
    full = timed_rate(lambda: train_step(*to_device(*next(batches))), recipe, device)
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
                    channels_last=not args.no_channels_last, warmup=args.warmup, steps=args.steps,
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
