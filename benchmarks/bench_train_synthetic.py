"""Train on the synthetic dataset on the CPU and print APs and wall times (SYNTHETIC DATA, not WIDER FACE).

1. FeatherFace V1 from the ImageNet MobileNet-0.25 backbone with the `synthetic_cpu` recipe
   (target: AP easy >= 0.80 within 10 minutes of training on a laptop-class CPU);
2. FeatherFace V2 distilled from that V1, and V2 trained alone, for the same epochs.

    .venv/bin/python benchmarks/bench_train_synthetic.py [--epochs N] [--skip-v2] [--out runs/bench_synth]

APs are the WIDER FACE protocol on the synthetic validation split at the preset's
validation scale. Wall times include validation; on a shared machine they are pessimistic.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch


def _run(label: str, fn) -> dict:
    start = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    train_time = sum(row["epoch_time_s"] for row in result.history)
    ap = result.final_ap or {}
    print(f"{label:<28} AP easy {ap.get('easy', float('nan')):.4f}  medium {ap.get('medium', float('nan')):.4f}  "
          f"hard {ap.get('hard', float('nan')):.4f}  | training {train_time:.0f} s, wall {wall:.0f} s, "
          f"{result.epochs_completed} epochs, status {result.status}", flush=True)
    return {"label": label, "ap": ap, "train_time_s": train_time, "wall_s": wall,
            "epochs": result.epochs_completed, "best": str(result.best_checkpoint), "status": result.status}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench_synth")
    parser.add_argument("--data", default=None, help="synthetic root (default data/synthetic, generated if absent)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap steps per epoch")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--skip-v1", action="store_true", help="reuse <out>/v1/best.pt")
    parser.add_argument("--skip-v2", action="store_true", help="only train V1")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from ffcore.data.synth import ensure_synthetic_dataset
    from ffcore.engine import DistillConfig, get_preset
    from ffcore.engine.distill import distill
    from ffcore.engine.supervised import train

    root = ensure_synthetic_dataset(args.data)
    overrides = {k: v for k, v in {"epochs": args.epochs, "image_size": args.image_size,
                                   "batch_size": args.batch_size,
                                   "max_steps_per_epoch": args.max_steps_per_epoch}.items() if v is not None}
    base = get_preset("synthetic_cpu", data_root=str(root), progress=False, log_every_steps=10, **overrides)
    out = Path(args.out)
    print(f"SYNTHETIC DATA | recipe {base.model} {base.image_size}px batch {base.batch_size} "
          f"{base.epochs} epochs lr {base.lr} ({base.schedule}) | torch threads {torch.get_num_threads()}", flush=True)

    results = []
    v1_dir = out / "v1"
    if not args.skip_v1:
        results.append(_run("featherface_v1 (ImageNet init)", lambda: train(replace(base, out_dir=str(v1_dir)))))
    if not args.skip_v2:
        teacher = DistillConfig(teacher=base.model, teacher_weights=str(v1_dir / "best.pt"))
        v2 = replace(base, model="featherface_v2")
        results.append(_run("featherface_v2 distilled", lambda: distill(replace(v2, out_dir=str(out / "v2_kd")), teacher)))
        results.append(_run("featherface_v2 alone", lambda: train(replace(v2, out_dir=str(out / "v2")))))
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_train_synthetic.json").write_text(json.dumps(
        {"dataset": "synthetic", "recipe": base.to_dict(), "threads": torch.get_num_threads(), "runs": results},
        indent=2, default=str) + "\n")
    print(f"wrote {out / 'bench_train_synthetic.json'}")


if __name__ == "__main__":
    main()
