"""Start-up time of the `ffcore` command: `--help`, `--version`, the subcommands' `--help`,
`evaluate` on the whole WIDER FACE validation set and `detect` on a photo (model load included).

    .venv/bin/python benchmarks/bench_startup.py [--runs 5]

Each command runs `--runs` times as a fresh process (`python -m ffcore ...`), the commands
interleaved round by round so that a load spike hits all of them; printed: median, min and
max wall time, and the load average before and after (the machine may be shared: the minimum
is the figure least disturbed by other work). One extra `python -X importtime` launch per
command lists the heavy packages the command imported and their cumulative import time,
which tells what a command pays for before it does any work. `evaluate` reads prediction
files generated from the ground truth (benchmarks/bench_eval.py's realistic predictions: about
four boxes per face), written once before the timed runs. tests/cli/test_startup.py guards the
import graph these times follow from.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_eval import realistic_predictions

from ffcore.paths import shared_dir

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "torch._dynamo", "cv2", "numpy", "scipy", "pandas", "matplotlib", "onnx",
         "onnxruntime", "onnxscript", "fvcore", "tensorboard", "seaborn", "yaml")


def write_predictions(gt_dir: Path, out: Path) -> int:
    """Realistic prediction files for every validation image of `gt_dir`; returns the box count."""
    from ffcore.eval import load_ground_truth, write_prediction_file

    mapping = realistic_predictions(load_ground_truth(gt_dir))
    for (event, name), boxes in mapping.items():
        write_prediction_file(out, event, name, boxes, integer_boxes=False)
    return sum(len(boxes) for boxes in mapping.values())


def commands(scratch: Path, gt_dir: Path) -> dict[str, list[str]]:
    photo = shared_dir() / "images" / "crowd.jpg"
    return {
        "ffcore --help": ["--help"],
        "ffcore --version": ["--version"],
        "ffcore train --help": ["train", "--help"],
        "ffcore distill --help": ["distill", "--help"],
        "ffcore detect --help": ["detect", "--help"],
        "ffcore evaluate (WIDER FACE val)": ["evaluate", "--pred", str(scratch / "pred"), "--gt", str(gt_dir)],
        "ffcore detect (RetinaFace, crowd.jpg)": ["detect", "--model", "retinaface_mnet025", "--image", str(photo),
                                                 "--json", str(scratch / "faces.json")],
    }


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def heavy_imports(argv: list[str]) -> dict[str, float]:
    """{package: cumulative import seconds} of the heavy packages one launch imported."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "ffcore", *argv], cwd=REPO,
                            capture_output=True, text=True)
    found = {}
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
        if match and match.group(2) in HEAVY:
            # a package imported twice in the log (never, in practice) keeps its first, full time
            found.setdefault(match.group(2), int(match.group(1)) / 1e6)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="launches per command (default 5)")
    parser.add_argument("--gt", default=str(shared_dir() / "data" / "widerface_val_gt"),
                        help="WIDER FACE validation ground truth (the .mat files)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    with tempfile.TemporaryDirectory(prefix="ffcore-startup-") as scratch:
        boxes = write_predictions(Path(args.gt), Path(scratch) / "pred")
        print(f"evaluate reads {boxes} predicted boxes for the images of {args.gt}")
        table = commands(Path(scratch), Path(args.gt))
        load_before = load_average()
        times: dict[str, list[float]] = {name: [] for name in table}
        for _ in range(args.runs):
            for name, command in table.items():
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "ffcore", *command], cwd=REPO, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times[name].append(time.perf_counter() - start)
        print(f"{args.runs} launches per command, interleaved, on {os.cpu_count()} CPUs; load average (1, 5, 15 "
              f"min) {load_before} before, {load_average()} after")
        for name, command in table.items():
            samples = times[name]
            heavy = heavy_imports(command)
            listed = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(heavy.items(), key=lambda kv: -kv[1])) or "none"
            print(f"{name:<38} median {statistics.median(samples):6.2f} s  (min {min(samples):.2f}, "
                  f"max {max(samples):.2f})  heavy imports: {listed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
