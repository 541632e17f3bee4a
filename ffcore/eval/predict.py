"""WIDER FACE inference: a model over a validation tree -> prediction files (+ metadata) -> AP.

The prediction files follow the evaluation layout (`<out>/<event>/<name>.txt`); a
`predictions_meta.json` beside them says which model, checkpoint, test scale and
post-processing thresholds produced them, so every AP can be traced to its scale.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ffcore.checkpoint import file_sha256
from ffcore.eval.inference import (DEFAULT_TEST_TIME, TestTimeConfig, caps_name, detect_image,
                                   detections_to_xywh_score, parse_scale, postprocess_with_caps, scale_label)
from ffcore.eval.predictions import METADATA_FILE, write_prediction_file
from ffcore.preprocess import read_image


@dataclass(frozen=True)
class PredictionRun:
    """Where the prediction files went and how they were made."""

    out_dir: Path
    metadata: dict

    @property
    def scale(self) -> str:
        return self.metadata["scale_label"]


def validation_index(images, check_images: bool = True):
    """A `ValidationIndex` as given, or the one of a WIDER-format dataset root."""
    from ffcore.data.layout import WiderFaceLayout
    from ffcore.data.validation import ValidationIndex

    if isinstance(images, ValidationIndex):
        return images
    return WiderFaceLayout.find(images, need=("val",)).validation_index(check_images=check_images)


def predict_widerface(model: torch.nn.Module, images, out_dir: str | Path, scale: str | int = "origin",
                      multiscale: bool = False, flip: bool = False, device: str | torch.device = "cpu",
                      progress: bool = True, limit: int | None = None, checkpoint: str | Path | None = None,
                      test_time: TestTimeConfig = DEFAULT_TEST_TIME, integer_boxes: bool = True,
                      caps: str | None = None) -> PredictionRun:
    """Run `model` over every validation image and write one prediction file per image.

    `images`: a `ffcore.data.ValidationIndex` or a dataset root (WIDER_val/images + the
    validation list). `scale`: "origin" (image as is), "vga" (long side 640) or a long
    side in pixels; `multiscale`/`flip` add test-time passes merged by NMS. `checkpoint`
    (the weights file) is only recorded, by its SHA-256 prefix. `integer_boxes` truncates
    coordinates as the reference scripts' files do. `caps` ("none" or "fork", see
    `ffcore.eval.inference.DETECTION_CAPS`) replaces the detection caps of `test_time`
    (default: none, as the released test scripts); the metadata records the caps used.
    """
    from tqdm.auto import tqdm

    scale = parse_scale(scale)
    if caps is not None:
        test_time = dataclasses.replace(test_time, postprocess=postprocess_with_caps(caps, test_time.postprocess))
    index = validation_index(images)
    entries = list(index)[:limit] if limit is not None else list(index)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.to(device).eval()
    start = time.perf_counter()
    n_boxes = 0
    for entry in tqdm(entries, desc=f"predict {scale_label(scale, multiscale, flip)}", unit="img",
                      disable=not progress):
        image = read_image(entry.image_path)
        detections = detect_image(model, image, scale=scale, multiscale=multiscale, flip=flip, device=device,
                                  config=test_time)
        boxes = detections_to_xywh_score(detections)
        n_boxes += boxes.shape[0]
        write_prediction_file(out_dir, entry.event, entry.name, boxes, integer_boxes=integer_boxes)
    elapsed = time.perf_counter() - start

    metadata = {
        "model": getattr(model, "name", type(model).__name__),
        "model_overrides": getattr(model, "overrides", {}),
        "checkpoint": str(checkpoint) if checkpoint else None,
        "checkpoint_sha256": file_sha256(checkpoint) if checkpoint and Path(checkpoint).is_file() else None,
        "scale": scale,
        "scale_label": scale_label(scale, multiscale, flip),
        "multiscale_factors": list(test_time.multiscale_factors) if multiscale else None,
        "flip": flip,
        "postprocess": dataclasses.asdict(test_time.postprocess),
        "detection_caps": caps_name(test_time.postprocess),
        "integer_boxes": integer_boxes,
        "device": str(device),
        "images": len(entries),
        "images_listed": len(index),
        "boxes": n_boxes,
        "image_list": str(index.source),
        "seconds": round(elapsed, 2),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str) + "\n")
    return PredictionRun(out_dir=out_dir, metadata=metadata)


def ground_truth_dir(dataset_root: str | Path) -> Path:
    from ffcore.data.layout import WiderFaceLayout

    return WiderFaceLayout.find(dataset_root, need=("val", "val_gt")).ground_truth_dir


def evaluate_model(model: torch.nn.Module, dataset_root: str | Path, scale: str | int = "origin",
                   multiscale: bool = False, flip: bool = False, device: str | torch.device = "cpu",
                   out_dir: str | Path | None = None, progress: bool = True, limit: int | None = None,
                   checkpoint: str | Path | None = None, caps: str | None = None):
    """Predict the validation set of `dataset_root` (into `out_dir` or a temporary folder) and evaluate it.

    Returns an `EvalResult` labelled with the model and test scale. With `limit`, only the
    first images are predicted and the others count as images without detections (quick
    checks only: such APs are not comparable).
    """
    import warnings

    from ffcore.eval import load_ground_truth, read_predictions
    from ffcore.eval.predictions import MissingPredictionsWarning
    from ffcore.eval.protocol import evaluate

    ground_truth = load_ground_truth(ground_truth_dir(dataset_root))
    with tempfile.TemporaryDirectory(prefix="ffcore_pred_") as tmp:
        target = Path(out_dir) if out_dir is not None else Path(tmp)
        run = predict_widerface(model, dataset_root, target, scale=scale, multiscale=multiscale, flip=flip,
                                device=device, progress=progress, limit=limit, checkpoint=checkpoint, caps=caps)
        with warnings.catch_warnings():
            if limit is not None:
                warnings.simplefilter("ignore", MissingPredictionsWarning)
            predictions = read_predictions(target, ground_truth)
    return evaluate(predictions, ground_truth, label=f"{run.metadata['model']} ({run.scale})")
