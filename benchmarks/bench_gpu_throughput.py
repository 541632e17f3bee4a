"""Training throughput (images/s) at 640x640, batch 32, on CUDA: forward + MultiBoxLoss + backward + AdamW step.

    .venv/bin/python benchmarks/bench_gpu_throughput.py [--models featherface_v1 featherface_v2] [--no-amp]

Synthetic inputs (random images, a few random faces per image) so that only the model,
the loss and the optimiser are timed, not data loading. Prints the median of several
timed windows after warm-up. Without CUDA it prints a skip message and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _targets(batch: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    targets = []
    for _ in range(batch):
        n = int(torch.randint(1, 12, (1,), generator=generator))
        centre = torch.rand(n, 2, generator=generator) * 0.8 + 0.1
        size = torch.rand(n, 2, generator=generator) * 0.2 + 0.02
        boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)
        landmarks = centre.repeat(1, 5) + (torch.rand(n, 10, generator=generator) - 0.5) * 0.02
        targets.append(torch.cat([boxes, landmarks, torch.ones(n, 1)], dim=1).to(device))
    return targets


def measure(name: str, batch: int, size: int, amp: bool, warmup: int, steps: int, windows: int) -> float:
    from ffcore.anchors import make_priors
    from ffcore.engine.config import get_preset
    from ffcore.engine.schedules import build_optimizer
    from ffcore.losses import MultiBoxLoss
    from ffcore.models import create_model

    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    model = create_model(name).to(device).train()
    optimizer = build_optimizer(model.parameters(), get_preset("featherface_paper"))
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    loss_fn = MultiBoxLoss()
    priors = make_priors(size, size, model.prior_config, device=device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, device=device) * 50
    targets = _targets(batch, generator, device)

    def step():
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            terms = loss_fn(predictions=model(images), priors=priors, targets=targets)
            total = loss_fn.total(terms)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        rates.append(batch * steps / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["retinaface_mnet025", "featherface_v1", "featherface_v2"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--no-amp", action="store_true")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--windows", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("skipped: CUDA is not available on this machine (this benchmark measures GPU training throughput)")
        return
    amp = not args.no_amp
    print(f"{torch.cuda.get_device_name()} | {args.size}x{args.size}, batch {args.batch_size}, "
          f"amp {amp} | median of {args.windows} windows of {args.steps} steps")
    for name in args.models:
        rate = measure(name, args.batch_size, args.size, amp, args.warmup, args.steps, args.windows)
        print(f"{name:<24} {rate:8.1f} images/s  ({rate / args.batch_size:.2f} steps/s)", flush=True)


if __name__ == "__main__":
    main()
