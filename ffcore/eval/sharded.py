"""Validation split over several processes: each predicts a shard of the images, one evaluates.

Under DDP every rank predicts the images `rank, rank + world_size, ...` (`predict_shard`), the
boxes travel to rank 0 as arrays (the caller gathers them: the engine owns the process group),
and rank 0 writes the prediction files and runs the WIDER FACE protocol on the whole set
(`evaluate_shards`). The files and the protocol are those of `ffcore.eval.predict.evaluate_model`,
so a sharded validation gives the same AP as one process predicting every image.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

ShardBoxes = list[tuple[str, str, np.ndarray]]   # (event, image name, boxes x y w h score)


def predict_shard(model: torch.nn.Module, dataset_root: str | Path, rank: int, world_size: int,
                  scale: str | int = "origin", device: str | torch.device = "cpu") -> ShardBoxes:
    """Detections of this rank's share of the validation images (every world_size-th, from `rank`)."""
    from ffcore.eval.inference import detect_image, detections_to_xywh_score, parse_scale
    from ffcore.eval.predict import validation_index
    from ffcore.preprocess import read_image

    scale = parse_scale(scale)
    entries = list(validation_index(dataset_root))[rank::world_size]
    model = model.to(device).eval()
    shard: ShardBoxes = []
    for entry in entries:
        detections = detect_image(model, read_image(entry.image_path), scale=scale, device=device)
        shard.append((entry.event, entry.name, detections_to_xywh_score(detections)))
    return shard


def evaluate_shards(shards: list[ShardBoxes], dataset_root: str | Path, label: str = ""):
    """The `EvalResult` of the union of every rank's shard (written as prediction files, then read back
    through the same reader as a single-process evaluation)."""
    from ffcore.eval import load_ground_truth, read_predictions
    from ffcore.eval.predict import ground_truth_dir
    from ffcore.eval.predictions import write_prediction_file
    from ffcore.eval.protocol import evaluate

    ground_truth = load_ground_truth(ground_truth_dir(dataset_root))
    with tempfile.TemporaryDirectory(prefix="ffcore_val_") as tmp:
        for shard in shards:
            for event, name, boxes in shard:
                write_prediction_file(tmp, event, name, boxes)
        predictions = read_predictions(tmp, ground_truth)
    return evaluate(predictions, ground_truth, label=label)
