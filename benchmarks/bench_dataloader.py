"""Training data-loader throughput (images/s) with the training augmentation, and where its time goes.

Reads a WIDER-format root (default: WIDER FACE-sized synthetic JPEGs, 1024 px on the long side,
generated once: the photos `benchmarks/bench_gpu_throughput.py` trains on), applies the trainer's
`TrainTransform` at --size (640; uint8 out, the mean subtracted later on the device, as the trainer
does) and collates batches as the trainer does. Each setting runs --repeats times over --images
images after one warm-up batch; the median images/s is printed. With --workers 0 the one process
does all of it: that figure is the rate of one loader worker. Worker start-up is part of each run.

--stages times each step of the augmentation on every image once (decode, crop, photometric
distortion, padding, mirror, resize by interpolation drawn, HWC -> CHW) and the collate of a batch:
where a sample's time goes (each figure is the mean over all images, so they add up to the total).

    .venv/bin/python benchmarks/bench_dataloader.py [--data ROOT] [--size 640] [--workers 0 1 2] [--stages]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch


def time_loader(dataset, workers: int, batch_size: int, images: int) -> tuple[float, float]:
    """(images per second of wall time, images per second of this process's CPU time). With no worker
    the second is what one worker delivers on a core of its own, whatever else the machine runs."""
    from ffcore.data.datasets import detection_collate

    subset = torch.utils.data.Subset(dataset, list(range(min(images, len(dataset)))))
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=workers,
                                         collate_fn=detection_collate)
    start, cpu_start = time.perf_counter(), time.process_time()
    seen = 0
    for batch_images, _ in loader:
        seen += batch_images.shape[0]
    return seen / (time.perf_counter() - start), seen / max(time.process_time() - cpu_start, 1e-9)


def stage_times(dataset, config, images: int, batch_size: int) -> dict[str, float]:
    """Mean milliseconds per image of each step of the training augmentation (`TrainTransform`'s own
    steps, in its order), and of collating one batch."""
    import cv2

    from ffcore.data import transforms
    from ffcore.data.datasets import detection_collate

    totals: dict[str, list[float]] = {}

    def timed(stage, function, *args):
        start = time.perf_counter()
        out = function(*args)
        totals.setdefault(stage, []).append(time.perf_counter() - start)
        return out

    samples = []
    for index in range(min(images, len(dataset))):
        image = timed("decode", cv2.imread, str(dataset.image_path(index)), cv2.IMREAD_COLOR)
        targets = np.asarray(dataset.annotations[index].targets_pixels(), np.float32).reshape(-1, 15)
        rng = np.random.default_rng(index)
        image, targets, cropped = timed("crop", transforms.random_square_crop, image, targets, rng,
                                        config.crop_scales, config.crop_attempts, config.image_size)
        image = timed("distort", transforms.photometric_distort, image, rng)
        if not cropped:
            image = timed("pad", transforms.pad_to_square, image)
        if rng.uniform() < config.mirror_probability:
            image, targets = timed("mirror", transforms.mirror, image, targets)
        interpolation = config.interpolations[rng.integers(len(config.interpolations))]
        image = timed(f"resize {interpolation}", cv2.resize, image, (config.image_size,) * 2, None, 0, 0,
                      transforms._cv2_interpolation(interpolation))
        chw = timed("chw", lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))), image)
        samples.append((chw, torch.from_numpy(targets)))
    for start in range(0, len(samples) - batch_size + 1, batch_size):
        timed("collate (per image)", detection_collate, samples[start:start + batch_size])
    seen = len(samples)
    out = {stage: 1e3 * sum(values) / seen for stage, values in totals.items()}
    out["collate (per image)"] = 1e3 * sum(totals.get("collate (per image)", [0.0])) / max(
        1, batch_size * len(totals.get("collate (per image)", [])))
    return out


def wider_sized_root():
    from ffcore.data.synth import WIDER_SIZED_SYNTH, ensure_synthetic_dataset
    from ffcore.paths import default_synthetic_root

    # the photos benchmarks/bench_gpu_throughput.py trains on
    return ensure_synthetic_dataset(default_synthetic_root() / "throughput_1024", WIDER_SIZED_SYNTH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="WIDER-format root (default: WIDER FACE-sized synthetic JPEGs)")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=96, help="images per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stages", action="store_true", help="also time each step of the augmentation")
    args = parser.parse_args()

    import cv2

    from ffcore.data.layout import WiderFaceLayout
    from ffcore.data.transforms import TrainTransform, TrainTransformConfig

    torch.set_num_threads(1)
    cv2.setNumThreads(1)     # one loader worker is one core
    root = args.data or wider_sized_root()
    config = TrainTransformConfig(image_size=args.size, normalise=False)    # as the trainer's loader
    dataset = WiderFaceLayout.find(root, need=("train",)).train_dataset(transform=TrainTransform(config), seed=0)
    print(f"data loader, {root} ({len(dataset)} images), augmentation at {args.size}x{args.size}, uint8 out, "
          f"batch {args.batch_size}, {args.images} images per run, {os.cpu_count()} CPUs, load average "
          f"{open('/proc/loadavg').read().split()[0] if os.path.exists('/proc/loadavg') else '?'}")
    if args.stages:
        times = stage_times(dataset, config, args.images, args.batch_size)
        print("  ms per image: " + ", ".join(f"{stage} {ms:.2f}" for stage, ms in times.items())
              + f"; total {sum(times.values()):.2f}")
    for workers in args.workers:
        time_loader(dataset, workers, args.batch_size, args.batch_size)              # warm-up
        runs = [time_loader(dataset, workers, args.batch_size, args.images) for _ in range(args.repeats)]
        rates = [wall for wall, _ in runs]
        line = (f"  workers={workers}: median {statistics.median(rates):7.1f} images/s "
                f"(runs: {', '.join(f'{r:.1f}' for r in rates)})")
        if workers == 0:
            per_cpu = [cpu for _, cpu in runs]
            line += (f"; per CPU-second of this process {statistics.median(per_cpu):.1f} "
                     f"(runs: {', '.join(f'{r:.1f}' for r in per_cpu)})")
        print(line)


if __name__ == "__main__":
    main()
