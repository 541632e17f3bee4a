"""Start-up time of the `ffcore` command: `--help`, a subcommand's `--help`, and `detect` on a photo.

    .venv/bin/python benchmarks/bench_startup.py [--runs 5]

Each command runs `--runs` times as a fresh process (`python -m ffcore ...`), the commands
interleaved round by round so that a load spike hits all of them; printed: median, min and
max wall time. One extra `python -X importtime` launch per command lists the heavy packages
the command imported and their cumulative import time, which tells what a command pays for
before it does any work.
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

from ffcore.paths import shared_dir

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "torch._dynamo", "cv2", "numpy", "scipy", "pandas", "matplotlib", "onnx",
         "onnxruntime", "onnxscript", "fvcore", "tensorboard", "seaborn")


def commands(scratch: Path) -> dict[str, list[str]]:
    photo = shared_dir() / "images" / "crowd.jpg"
    return {
        "ffcore --help": ["--help"],
        "ffcore detect --help": ["detect", "--help"],
        "ffcore detect (RetinaFace, crowd.jpg)": ["detect", "--model", "retinaface_mnet025", "--image", str(photo),
                                                 "--json", str(scratch / "faces.json")],
    }


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
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    with tempfile.TemporaryDirectory(prefix="ffcore-startup-") as scratch:
        table = commands(Path(scratch))
        times: dict[str, list[float]] = {name: [] for name in table}
        for _ in range(args.runs):
            for name, command in table.items():
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "ffcore", *command], cwd=REPO, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times[name].append(time.perf_counter() - start)
        print(f"{args.runs} launches per command, interleaved; load average {os.getloadavg()[0]:.1f} at the end")
        for name, command in table.items():
            samples = times[name]
            heavy = heavy_imports(command)
            listed = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(heavy.items(), key=lambda kv: -kv[1])) or "none"
            print(f"{name:<40} median {statistics.median(samples):6.2f} s  (min {min(samples):.2f}, "
                  f"max {max(samples):.2f})  heavy imports: {listed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
