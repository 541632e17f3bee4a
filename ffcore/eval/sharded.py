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
                  scale: str | int = "origin", device: str | torch.device = "cpu", batch_size: int = 1) -> ShardBoxes:
    """Detections of this rank's share of the validation images (every world_size-th, from `rank`).

    `batch_size` > 1: images that enter the network at the same size (the same original size, so the
    same resize factor) go through it together, up to `batch_size` at a time, the images waiting for
    a partner at most 2 x batch_size. The network (in eval mode) and the decoding treat each image of a
    batch on its own, so each image's detections are those `detect_image` gives it alone, up to float
    rounding (a batched convolution may sum in another order: a few 1e-6 px); the AP is then the same
    (exactly, in tests/test_batched_validation.py) unless a score sits within that rounding of another."""
    from ffcore.eval.inference import detect_image, detections_to_xywh_score, parse_scale
    from ffcore.eval.predict import validation_index
    from ffcore.preprocess import read_image

    scale = parse_scale(scale)
    entries = list(validation_index(dataset_root))[rank::world_size]
    model = model.to(device).eval()
    if batch_size <= 1:
        return [(entry.event, entry.name,
                 detections_to_xywh_score(detect_image(model, read_image(entry.image_path), scale=scale,
                                                       device=device)))
                for entry in entries]
    boxes: dict[int, np.ndarray] = {}
    waiting: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = {}
    for position, entry in enumerate(entries):
        image = read_image(entry.image_path)
        group = waiting.setdefault(image.shape[:2], [])
        group.append((position, image))
        if len(group) == batch_size:
            boxes.update(_detect_group(model, waiting.pop(image.shape[:2]), scale, device))
        elif sum(len(g) for g in waiting.values()) >= 2 * batch_size:
            largest = max(waiting, key=lambda shape: len(waiting[shape]))
            boxes.update(_detect_group(model, waiting.pop(largest), scale, device))
    for group in waiting.values():
        boxes.update(_detect_group(model, group, scale, device))
    return [(entry.event, entry.name, boxes[position]) for position, entry in enumerate(entries)]


def _detect_group(model: torch.nn.Module, group: list[tuple[int, np.ndarray]], scale, device) -> dict[int, np.ndarray]:
    """{position: x y w h score} of same-sized images, in one forward pass: `detect_image`'s resize,
    tensor and decoding (`ffcore.eval.inference._forward`), batched."""
    import cv2

    from ffcore.eval.inference import DEFAULT_TEST_TIME, detections_to_xywh_score, model_prior_config, resize_factor
    from ffcore.postprocess import postprocess
    from ffcore.preprocess import image_to_tensor

    height, width = group[0][1].shape[:2]
    factor = resize_factor(height, width, scale)
    tensors = []
    for _, image in group:
        if factor != 1.0:
            image = cv2.resize(np.float32(image), None, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
        tensors.append(image_to_tensor(image, device))
    batch = torch.cat(tensors)
    with torch.inference_mode():
        loc, conf, landm = model(batch)[:3]
    detections = postprocess(loc, conf, landm, input_size=tuple(batch.shape[2:]), resize=factor,
                             prior_config=model_prior_config(model), config=DEFAULT_TEST_TIME.postprocess)
    return {position: detections_to_xywh_score(d) for (position, _), d in zip(group, detections)}


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
