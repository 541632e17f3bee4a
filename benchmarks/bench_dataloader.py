"""Training data-loader throughput (images/s) with the full augmentation, for 0, 1 and 2 workers.

Reads a WIDER-format root (default: the synthetic dataset, generated if absent), applies
`TrainTransform` at --size (640) and collates batches as the trainer does. Each setting
runs --repeats times over --images images after one warm-up batch; the median images/s
is printed. Worker start-up is part of each run (the trainer re-creates workers each epoch).

    .venv/bin/python benchmarks/bench_dataloader.py [--data ROOT] [--size 640] [--workers 0 1 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


def time_loader(dataset, workers: int, batch_size: int, images: int) -> float:
    from ffcore.data.datasets import detection_collate

    subset = torch.utils.data.Subset(dataset, list(range(min(images, len(dataset)))))
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=workers,
                                         collate_fn=detection_collate)
    start = time.perf_counter()
    seen = 0
    for batch_images, _ in loader:
        seen += batch_images.shape[0]
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="WIDER-format root (default: synthetic dataset)")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--images", type=int, default=64, help="images per run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from ffcore.data.layout import WiderFaceLayout
    from ffcore.data.synth import ensure_synthetic_dataset
    from ffcore.data.transforms import TrainTransform, TrainTransformConfig

    torch.set_num_threads(1)
    root = args.data or ensure_synthetic_dataset()
    dataset = WiderFaceLayout.find(root, need=("train",)).train_dataset(
        transform=TrainTransform(TrainTransformConfig(image_size=args.size)), seed=0)
    label = "synthetic" if args.data is None else str(root)
    print(f"data loader, {label} data ({len(dataset)} images), augmentation at {args.size}x{args.size}, "
          f"batch {args.batch_size}, {args.images} images per run, {os.cpu_count()} CPUs")
    for workers in args.workers:
        time_loader(dataset, workers, args.batch_size, args.batch_size)              # warm-up
        rates = [time_loader(dataset, workers, args.batch_size, args.images) for _ in range(args.repeats)]
        print(f"  workers={workers}: median {statistics.median(rates):7.1f} images/s "
              f"(runs: {', '.join(f'{r:.1f}' for r in rates)})")


if __name__ == "__main__":
    main()
