"""FeatherFace V1 forward and forward+backward on the CPU: torchvision's deform_conv2d vs grid_sample.

Times the whole model (random init with non-zero offsets and masks, training mode, so BatchNorm uses batch statistics as in
training) with every ModulatedDeformConv2d set to one implementation, then the other. Prints
medians of --repeats runs after warm-up, the speed-up, and the largest output difference
between the two implementations on the same input.

    .venv/bin/python benchmarks/bench_deform_conv.py [--sizes 256 320] [--batch 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import os

import torch
from ffcore.bench import median_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 320])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from ffcore.models import create_model
    from ffcore.models.context import ModulatedDeformConv2d, set_deform_implementation

    torch.manual_seed(0)
    model = create_model("featherface_v1").train()
    # Offsets and masks start at zero / one; give them a trained-like spread so the sampling is
    # really deformable (and the difference check below meaningful).
    for layer in model.modules():
        if isinstance(layer, ModulatedDeformConv2d):
            torch.nn.init.normal_(layer.offset_conv.weight, std=0.02)
            torch.nn.init.normal_(layer.mask_conv.weight, std=0.02)
    print(f"FeatherFace V1, batch {args.batch}, {args.threads} thread(s), medians of {args.repeats} runs; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'size':>5} {'pass':<17} {'torchvision s':>14} {'grid_sample s':>14} {'speed-up':>9} "
          f"{'img/s (new)':>12}")

    for size in args.sizes:
        x = torch.randn(args.batch, 3, size, size)
        outputs = {}
        for implementation in ("torchvision", "grid_sample"):
            set_deform_implementation(model, implementation)
            with torch.no_grad():
                outputs[implementation] = model(x)[:3]

        def forward():
            with torch.no_grad():
                model(x)

        def forward_backward():
            model.zero_grad(set_to_none=True)
            loc, conf, landm = model(x)[:3]
            (loc.square().mean() + conf.square().mean() + landm.square().mean()).backward()

        for label, fn in (("forward", forward), ("forward+backward", forward_backward)):
            seconds = {}
            for implementation in ("torchvision", "grid_sample"):
                set_deform_implementation(model, implementation)
                seconds[implementation] = median_seconds(fn, args.repeats)
            old, new = seconds["torchvision"], seconds["grid_sample"]
            print(f"{size:>5} {label:<17} {old:>14.3f} {new:>14.3f} {old / new:>8.2f}x {args.batch / new:>12.1f}",
                  flush=True)
        difference = max((a - b).abs().max().item() for a, b in zip(outputs["torchvision"], outputs["grid_sample"]))
        print(f"{size:>5} max |torchvision - grid_sample| over loc/conf/landm: {difference:.2e}")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
