"""Wall time of the WIDER FACE evaluation on the whole validation ground truth.

Predictions are synthetic but realistically shaped: jittered ground-truth boxes (about
three per face, as NMS survivors are) plus false positives, ~4 boxes per face in all.
Prints the median of several runs for (a) reading the prediction files + evaluate and
(b) the pure `evaluate` call.

    .venv/bin/python benchmarks/bench_eval.py [--repeats 5] [--gt DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import numpy as np

from ffcore.eval import evaluate, load_ground_truth, read_predictions, write_prediction_file
from ffcore.paths import shared_dir


def realistic_predictions(gt, seed: int = 0, per_face: float = 3.0, false_positive_ratio: float = 0.35):
    rng = np.random.default_rng(seed)
    mapping = {}
    for i in range(gt.num_images):
        faces = gt.image_boxes(i)
        n_true = rng.poisson(per_face * len(faces))
        source = faces[rng.integers(0, len(faces), n_true)] if len(faces) else np.zeros((0, 4))
        size = np.maximum(source[:, 2:3], source[:, 3:4]) + 1
        true_boxes = source + rng.normal(0, 0.12, (n_true, 4)) * size
        true_scores = np.clip(rng.beta(5, 1.5, n_true), 0.02, 1)
        n_false = rng.poisson(false_positive_ratio * max(n_true, 3))
        false_boxes = np.c_[rng.uniform(0, 1000, (n_false, 2)), rng.uniform(4, 80, (n_false, 2))]
        false_scores = np.clip(rng.beta(1.2, 6, n_false), 0.02, 1)
        boxes = np.c_[np.concatenate([true_boxes, false_boxes]), np.concatenate([true_scores, false_scores])]
        mapping[gt.image_key(i)] = boxes
    return mapping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gt", default=str(shared_dir() / "data" / "widerface_val_gt"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    gt = load_ground_truth(args.gt)
    mapping = realistic_predictions(gt)
    n_boxes = sum(len(b) for b in mapping.values())
    print(f"ground truth: {gt.num_images} images, {gt.num_faces} faces; "
          f"predictions (synthetic): {n_boxes} boxes ({n_boxes / gt.num_faces:.2f} per face)")

    with tempfile.TemporaryDirectory() as tmp:
        for (event, name), boxes in mapping.items():
            write_prediction_file(tmp, event, name, boxes, integer_boxes=False)
        with_io, pure, gt_load = [], [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            gt_again = load_ground_truth(args.gt)
            gt_load.append(time.perf_counter() - start)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                predictions = read_predictions(tmp, gt_again)
            result = evaluate(predictions, gt_again)
            with_io.append(time.perf_counter() - start)
            start = time.perf_counter()
            evaluate(predictions, gt_again)
            pure.append(time.perf_counter() - start)

    aps = ", ".join(f"{k} {100 * v:.2f}" for k, v in result.to_dict().items())
    print(f"AP (synthetic predictions): {aps}")
    print(f"load ground truth (.mat):        median {statistics.median(gt_load):.3f} s")
    print(f"read files + evaluate:           median {statistics.median(with_io):.3f} s  "
          f"(runs: {', '.join(f'{t:.3f}' for t in with_io)})")
    print(f"evaluate only:                   median {statistics.median(pure):.3f} s  "
          f"(runs: {', '.join(f'{t:.3f}' for t in pure)})")
    total = statistics.median(gt_load) + statistics.median(with_io)
    print(f"total incl. ground truth:        {total:.3f} s")


if __name__ == "__main__":
    main()
