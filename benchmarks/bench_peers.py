"""Peer detectors (MTCNN, BlazeFace, dlib HOG, Haar cascade) timed beside our models on real photos.

    make peers
    .venv-peers/bin/python benchmarks/bench_peers.py [--repeats 20] [--threads 2] [--append]

Runs in the peers' own environment (.venv-peers, requirements-peers.txt): their pins do not
fit the main one. Our models run in the same process through ffcore (torch is in both
environments), so every detector is timed in the same interleaved rounds: each round calls
every detector once, in an order that rotates from round to round, so that a load spike on
a shared machine slows all of them alike and the ratios hold.

For each photo (../shared/images/crowd.jpg and group.jpg by default) and each size ("640":
long side resized to 640 px before timing, as our models' 640 test scale does; "original"),
every detector receives the same BGR uint8 array and runs its whole pipeline on it (our
models: BGR - mean, forward, decode, NMS; peers: their own conversion, pyramid and NMS).
One CSV row per (detector, image, size): latency distribution (every sample, median,
percentiles), detection count at the detector's operating point and the boxes in pixels of
the original photo, for drawing. `--append` adds the rows of this launch to an existing CSV,
so that several process launches can be compared (`run_id` tells them apart).
`ffcore.study.peer_detectors` reads the CSV for notebook 05.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))   # ffcore from this checkout, also when .venv-peers has not installed it

from ffcore.bench.peers import PEER_FACTORIES, load_peers  # noqa: E402  (needs the path above)

DEFAULT_MODELS = ("retinaface_mnet025", "featherface_v1", "featherface_v2", "featherface_eca_cbam")
# Trained weights shipped in ../shared/weights; other models need --weights (or --allow-untrained).
SHARED_WEIGHTS = {"retinaface_mnet025": "retinaface_mnet025_widerface.pth",
                  "featherface_eca_cbam": "featherface_eca_cbam_widerface.pth"}
OUR_THRESHOLD = 0.5     # ffcore detect's default operating point
COLUMNS = ("run_id", "detector", "kind", "backend", "weights", "image", "size", "height", "width", "threads",
           "repeats", "median_ms", "p10_ms", "p25_ms", "p75_ms", "p90_ms", "min_ms", "max_ms", "samples_ms",
           "detections", "operating_point", "boxes", "load_before", "load_after", "versions", "note")


@dataclass(frozen=True)
class Detector:
    name: str
    kind: str                      # "peer" or "ours"
    backend: str
    run: Callable[[np.ndarray], np.ndarray]     # BGR uint8 -> float32 [n, 5] x1 y1 x2 y2 score
    weights: str = ""
    operating_point: str = ""
    note: str = ""


def _our_detectors(names, weights: dict[str, str], threads: int,
                   allow_untrained: bool = False) -> tuple[list[Detector], dict[str, str]]:
    import torch

    from ffcore.eval.inference import detect_image
    from ffcore.models import create_model, list_models, load_pretrained
    from ffcore.paths import shared_dir

    torch.set_num_threads(threads)
    registered = set(list_models())
    detectors, skipped = [], {}
    for name in names:
        if name not in registered:
            skipped[name] = f"not registered in ffcore.models (registered: {', '.join(sorted(registered))})"
            continue
        path = weights.get(name)
        if path is None and name in SHARED_WEIGHTS and (shared_dir() / "weights" / SHARED_WEIGHTS[name]).is_file():
            path = str(shared_dir() / "weights" / SHARED_WEIGHTS[name])
        if path is None and not allow_untrained:
            # Random weights score thousands of boxes, so decode + NMS would dominate the time.
            skipped[name] = ("no trained weights: pass --weights NAME=PATH (or --allow-untrained to time it "
                             "anyway; its post-processing then costs what random scores cost)")
            continue
        model = (load_pretrained(name, path) if path else create_model(name)).eval()

        def run(image, model=model):
            with torch.inference_mode():
                found = detect_image(model, image, scale="origin").above(OUR_THRESHOLD)
            return np.concatenate([found.boxes.numpy(), found.scores.numpy()[:, None]], axis=1).astype(np.float32)

        detectors.append(Detector(name, "ours", f"torch {torch.__version__} eager", run,
                                  Path(path).name if path else "untrained", f"score >= {OUR_THRESHOLD}",
                                  "" if path else "untrained weights: latency only, detections meaningless"))
    return detectors, skipped


def _versions() -> str:
    from importlib import metadata

    found = {}
    for package in ("torch", "numpy", "opencv-contrib-python-headless", "mediapipe", "dlib-bin", "facenet-pytorch"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "absent"
    return json.dumps(found)


def _resize_long_side(image: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    import cv2

    factor = long_side / max(image.shape[:2])
    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), factor


def time_setting(detectors: list[Detector], image: np.ndarray, repeats: int, warmup: int) -> dict[str, dict]:
    """Interleaved timing of every detector on one image: {name: {"samples": [s], "found": array}}."""
    results = {d.name: {"samples": [], "found": None} for d in detectors}
    for detector in detectors:
        for _ in range(warmup):
            results[detector.name]["found"] = detector.run(image)
    for round_index in range(repeats):
        shift = round_index % len(detectors)
        for detector in detectors[shift:] + detectors[:shift]:
            start = time.perf_counter()
            found = detector.run(image)
            results[detector.name]["samples"].append(time.perf_counter() - start)
            results[detector.name]["found"] = found
    return results


def _percentile(samples_ms: list[float], q: float) -> float:
    return float(np.percentile(samples_ms, q))


def main(argv: list[str] | None = None) -> int:
    from ffcore.paths import REPO_ROOT, shared_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=None,
                        help="photos (default ../shared/images/crowd.jpg and group.jpg)")
    parser.add_argument("--sizes", nargs="+", default=["640", "original"],
                        help="'original' or a long side in pixels (default 640 original)")
    parser.add_argument("--peers", nargs="+", default=list(PEER_FACTORIES), choices=list(PEER_FACTORIES))
    parser.add_argument("--models", nargs="*", default=list(DEFAULT_MODELS),
                        help="our models timed in the same rounds (none: peers only)")
    parser.add_argument("--weights", nargs="+", default=[], metavar="NAME=PATH", help="checkpoints of our models")
    parser.add_argument("--allow-untrained", action="store_true",
                        help="also time our models that have no trained weights (detections meaningless)")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds per setting (default 20)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads (default 2)")
    parser.add_argument("--out", default=None, help="CSV (default results/peers/peer_benchmark.csv)")
    parser.add_argument("--append", action="store_true", help="add this launch's rows to an existing CSV")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--repeats and --threads must be >= 1 and --warmup >= 0")
    weights = {}
    for item in args.weights:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            parser.error(f"--weights {item!r}: expected NAME=PATH with an existing file")
        weights[name] = path

    import cv2

    cv2.setNumThreads(args.threads)
    peers, skipped = load_peers(args.peers)
    detectors = [Detector(p.name, "peer", p.backend, p.detect, "shipped with the package", p.threshold, p.note)
                 for p in peers]
    ours, skipped_ours = (_our_detectors(args.models, weights, args.threads, args.allow_untrained)
                          if args.models else ([], {}))
    detectors += ours
    for name, reason in {**skipped, **skipped_ours}.items():
        print(f"skipped {name}: {reason}", file=sys.stderr)
    if not detectors:
        print("no detector could start; see the reasons above", file=sys.stderr)
        return 1

    paths = [Path(p) for p in args.images] if args.images else [shared_dir() / "images" / n
                                                                 for n in ("crowd.jpg", "group.jpg")]
    run_id = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    versions = _versions()
    rows = []
    for path in paths:
        original = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if original is None:
            parser.error(f"cannot read image {path}")
        for size in args.sizes:
            if size == "original":
                image, factor = original, 1.0
            elif size.isdigit():
                image, factor = _resize_long_side(original, int(size))
            else:
                parser.error(f"--sizes {size!r}: expected 'original' or a long side in pixels")
            load_before = os.getloadavg()[0]
            results = time_setting(detectors, image, args.repeats, args.warmup)
            load_after = os.getloadavg()[0]
            for detector in detectors:
                samples_ms = [1e3 * s for s in results[detector.name]["samples"]]
                found = results[detector.name]["found"].astype(np.float64)
                found[:, :4] /= factor      # boxes in pixels of the original photo
                rows.append({
                    "run_id": run_id, "detector": detector.name, "kind": detector.kind, "backend": detector.backend,
                    "weights": detector.weights, "image": path.name, "size": size,
                    "height": image.shape[0], "width": image.shape[1], "threads": args.threads,
                    "repeats": args.repeats, "median_ms": statistics.median(samples_ms),
                    "p10_ms": _percentile(samples_ms, 10), "p25_ms": _percentile(samples_ms, 25),
                    "p75_ms": _percentile(samples_ms, 75), "p90_ms": _percentile(samples_ms, 90),
                    "min_ms": min(samples_ms), "max_ms": max(samples_ms),
                    "samples_ms": json.dumps([round(s, 3) for s in samples_ms]),
                    "detections": len(found), "operating_point": detector.operating_point,
                    "boxes": json.dumps([[round(v, 1) if np.isfinite(v) else None for v in row]
                                         for row in found.tolist()]),
                    "load_before": round(load_before, 2), "load_after": round(load_after, 2),
                    "versions": versions, "note": detector.note})
                print(f"{path.name:<10} {size:>8} {image.shape[1]}x{image.shape[0]:<5} {detector.name:<22} "
                      f"median {rows[-1]['median_ms']:8.1f} ms  p10-p90 {rows[-1]['p10_ms']:.1f}-"
                      f"{rows[-1]['p90_ms']:.1f}  {len(found):3d} faces", flush=True)

    out = Path(args.out) if args.out else REPO_ROOT / "results" / "peers" / "peer_benchmark.csv"  # as study.peer_detectors reads it
    out.parent.mkdir(parents=True, exist_ok=True)
    append = args.append and out.is_file()
    with out.open("a" if append else "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        if not append:
            writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {out} (run {run_id}; load average {rows[0]['load_before']} at start)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
