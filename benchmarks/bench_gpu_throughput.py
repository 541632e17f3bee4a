"""Training throughput (images/s) of V1 and V2 as `ffcore study train` runs them: model alone, full step,
data loader alone, beside the fork's 207 images/s.

    .venv/bin/python benchmarks/bench_gpu_throughput.py                 # CUDA, the full profile (< 10 min)
    .venv/bin/python benchmarks/bench_gpu_throughput.py --override amp=True   # the same with mixed precision
    .venv/bin/python benchmarks/bench_gpu_throughput.py --device cpu --steps 3 --size 96 --batch-size 2

What is timed is what the study trains: each run's training config is the study's own
(`ffcore.runs.training.train_config` of the profile, `--profile full` by default: 640 px, batch 32,
its speed settings: precision, channels-last, cuDNN autotuning, loader workers and prefetch, the
host-sync interval, gradient clipping), changed only by `--override FIELD=VALUE` (profile fields, as
`ffcore study train --override`) and by `--size` / `--batch-size` / `--workers` (shortcuts for the
profile's image_size / batch_size / workers). The step is the trainer's own
(`ffcore.engine.trainer.Trainer._train_step`) and the loader the trainer's own (`Trainer._data`: the
training augmentation, uint8 batches, pinned memory on CUDA). Three numbers per run, each the median
of `--windows` timed windows of `--steps` steps after `--warmup` untimed steps:

- data loader alone: batches of the trainer's loader, nothing else;
- model alone: the trainer's step on one batch from the loader, reused every step (no waiting for
  the loader; the host-to-device copy of the uint8 batch included);
- full step: the same step fed by the loader (what training really sustains).

Then, per run, the validation pass the trainer makes every val_every epochs (`predict_shard` at the
config's val_scale), batched by image size and one by one, in validation images/s: the rate
`ffcore study plan --val-images-per-second` takes.

Data: a WIDER-format root (`--data`); by default WIDER FACE-sized synthetic JPEGs (1024 px on the
long side, 320 training and 64 validation images, `ffcore.data.synth.WIDER_SIZED_SYNTH`, generated once
under data/synthetic/throughput_1024). The fork's ECA-CBAM
trained at about 207 images/s (640 px, batch 32; 404 iterations x 350 epochs in 6.2 h,
shared/reference/ARCHITECTURES.md): the goal is twice that, 414 images/s, for V1 and V2.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

DEFAULT_RUNS = ("featherface_v1", "featherface_v2")
FORK_REFERENCE_IMAGES_PER_S = 207.0    # ECA-CBAM, 640 px, batch 32 (shared/reference/ARCHITECTURES.md)
GOAL_IMAGES_PER_S = 2 * FORK_REFERENCE_IMAGES_PER_S


def study_configs(profile: str, runs: list[str], root: Path, device: str, overrides: dict) -> dict:
    """{run: the TrainConfig `ffcore study train` would run it with}, on `root` and `device`."""
    from ffcore.runs.context import open_study
    from ffcore.runs.plan import planned_runs
    from ffcore.runs.training import train_config

    study = open_study(profile, data_root=root, device=device, overrides=overrides, prepare_data=False)
    planned = planned_runs(study.profile)
    unknown = [run for run in runs if run not in planned]
    if unknown:
        raise SystemExit(f"{', '.join(unknown)}: not a run of profile {profile} (its runs: {', '.join(planned)})")
    return {run: train_config(study, run) for run in runs}


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


def timed_rate(step, batch: int, warmup: int, steps: int, windows: int, device: torch.device) -> float:
    """Median images/s over `windows` windows of `steps` calls of `step()`, after `warmup` calls."""
    for _ in range(warmup):
        step()
    _sync(device)
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        rates.append(batch * steps / (time.perf_counter() - start))
    return statistics.median(rates)


def run_rates(config, timing: dict) -> tuple[float, float, float]:
    """(data loader alone, model alone, full step) images/s of one run's training config, timing the
    trainer's own loader and step (`Trainer._train_step`: uint8 batch to the device, mean subtracted
    there, autocast when the config asks, loss, backward, clipping, optimiser and scheduler step, host
    reads every `sync_every_steps` steps)."""
    import tempfile

    from ffcore.engine.distributed import DistributedContext
    from ffcore.engine.run_log import RunLogger
    from ffcore.engine.supervised import DetectionTask, build_model, multibox_loss_for
    from ffcore.engine.trainer import Trainer, _EpochRun

    device = torch.device(config.device)
    with tempfile.TemporaryDirectory(prefix="ffcore_throughput_") as out:
        config = replace(config, out_dir=out, progress=False, tensorboard=False)
        # the start (ImageNet backbone or not) does not change the step's time
        model = build_model(config.model, config.model_overrides, False, seed=config.seed)
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
                raise RuntimeError(f"{config.model}: the training step stopped: {outcome.failure}")

        batches = endless(run.loader)
        loader = timed_rate(lambda: next(batches), config.batch_size, device=torch.device("cpu"), **timing)
        resident = next(batches)
        alone = timed_rate(lambda: step(resident), config.batch_size, device=device, **timing)
        full = timed_rate(lambda: step(next(batches)), config.batch_size, device=device, **timing)
    return loader, alone, full


def validation_rates(config, root: Path) -> tuple[float, float]:
    """(batched by image size at the config's val_batch_size, one by one) validation images/s: the
    trainer's validation pass (`ffcore.eval.sharded.predict_shard`) over the root's validation images
    at the config's val_scale, once each after one untimed image."""
    from ffcore.engine.supervised import build_model
    from ffcore.eval.sharded import predict_shard

    device = torch.device(config.device)
    model = build_model(config.model, config.model_overrides, False, seed=config.seed).to(device).eval()
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    rates = []
    for batch_size in (config.val_batch_size, 1):
        predict_shard(model, root, 0, 10 ** 9, scale=config.val_scale, device=device)    # warm-up: one image
        _sync(device)
        start = time.perf_counter()
        shard = predict_shard(model, root, 0, 1, scale=config.val_scale, device=device, batch_size=batch_size)
        _sync(device)
        rates.append(len(shard) / (time.perf_counter() - start))
    return rates[0], rates[1]


def resolve_data(data: str | None) -> Path:
    from ffcore.data.synth import WIDER_SIZED_SYNTH, ensure_synthetic_dataset
    from ffcore.paths import default_synthetic_root

    if data is not None:
        root = Path(data)
        if not root.is_dir():
            raise SystemExit(f"--data {root}: no such folder (a WIDER-format root, or omit it for the synthetic set)")
        return root
    # WIDER FACE-sized photos (1024 px on the long side), generated once and reused
    return ensure_synthetic_dataset(default_synthetic_root() / "throughput_1024", WIDER_SIZED_SYNTH)


def main(argv: list[str] | None = None) -> int:
    from ffcore.cli.study import check_overrides, parse_overrides
    from ffcore.runs.profiles import PROFILES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full", choices=list(PROFILES),
                        help="the study profile whose training configs are timed (default full)")
    parser.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a profile field, as `ffcore study train --override` (repeatable)")
    parser.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), help="runs of the profile's plan")
    parser.add_argument("--device", default=None, help="cuda | cpu | cuda:N (default cuda when available)")
    parser.add_argument("--data", default=None, help="WIDER-format root (default: WIDER FACE-sized synthetic JPEGs)")
    parser.add_argument("--size", type=int, default=None, help="the profile's image_size")
    parser.add_argument("--batch-size", type=int, default=None, help="the profile's batch_size")
    parser.add_argument("--workers", type=int, default=None, help="the profile's workers (loader processes)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=3)
    args = parser.parse_args(argv)
    if min(args.steps, args.windows) < 1 or args.warmup < 0:
        parser.error("--steps, --windows must be >= 1, --warmup >= 0")
    overrides = parse_overrides(args.override, prog="bench_gpu_throughput.py")
    for field_name, value in (("image_size", args.size), ("batch_size", args.batch_size), ("workers", args.workers)):
        if value is not None:
            overrides[field_name] = value
    check_overrides(args.profile, overrides, prog="bench_gpu_throughput.py")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available on this machine: run with --device cpu (and a tiny --size, --steps) "
              "to check the script, or on a GPU machine for the figures", file=sys.stderr)
        return 2
    root = resolve_data(args.data)
    configs = study_configs(args.profile, args.runs, root, device, overrides)
    timing = {"warmup": args.warmup, "steps": args.steps, "windows": args.windows}
    where = (torch.cuda.get_device_name(device) if device.startswith("cuda")
             else f"CPU ({torch.get_num_threads()} threads)")
    print(f"{where} | profile {args.profile}{''.join(f' {k}={v!r}' for k, v in overrides.items())} | "
          f"median of {args.windows} windows of {args.steps} steps after {args.warmup} | data {root}", flush=True)
    print(f"{'run':<24} {'loader alone':>13} {'model alone':>12} {'full step':>12}   (images/s)   settings")
    start = time.perf_counter()
    for run, config in configs.items():
        loader, alone, full = run_rates(config, timing)
        # A full step clearly slower than the model alone waits for the loader.
        bound = " (loader-bound)" if full < 0.9 * alone else ""
        print(f"{run:<24} {loader:13.1f} {alone:12.1f} {full:12.1f}   x{full / FORK_REFERENCE_IMAGES_PER_S:.2f} the "
              f"fork's {FORK_REFERENCE_IMAGES_PER_S:.0f} images/s (goal {GOAL_IMAGES_PER_S:.0f}){bound}   "
              f"{describe_settings(config)}", flush=True)
    for run, config in configs.items():
        batched, one_by_one = validation_rates(config, root)
        print(f"{run:<24} validation at scale {config.val_scale}: {batched:.1f} images/s batched by size "
              f"(up to {config.val_batch_size}), {one_by_one:.1f} one by one "
              f"(ffcore study plan --val-images-per-second {batched:.0f})", flush=True)
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


def describe_settings(config) -> str:
    """The speed settings the row ran with, as the trainer applies them (float16 autocast on CUDA only)."""
    amp = config.amp and (config.device.startswith("cuda") or config.amp_dtype == "bfloat16")
    return (f"{config.image_size}x{config.image_size}, batch {config.batch_size}, "
            f"{'amp ' + config.amp_dtype if amp else 'fp32'}, {'channels-last' if config.channels_last else 'contiguous'}, "
            f"{config.workers} workers, prefetch {config.prefetch_factor}, sync every {config.sync_every_steps}, "
            f"cudnn autotuning {'on' if config.cudnn_benchmark else 'off'}, clip {config.grad_clip_norm or 'none'}")


if __name__ == "__main__":
    raise SystemExit(main())
