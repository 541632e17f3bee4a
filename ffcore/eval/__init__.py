"""WIDER FACE evaluation: prediction files, the official protocol, inference.

The ground truth is read by `ffcore.data.ground_truth` (data sits below evaluation, and the
validation index reads the same files); its names are re-exported here, so
`load_ground_truth(dir)` + `read_predictions(dir, gt)` + `evaluate(preds, gt)` is the
whole evaluation; `ffcore.eval.predict` writes prediction files for a model,
`ffcore.eval.detect` runs a model on ordinary images, `ffcore.eval.plots` draws curves.
"""

from __future__ import annotations

from pathlib import Path

from ffcore.data.ground_truth import SETTINGS, GroundTruth, GroundTruthError, load_ground_truth
from ffcore.eval.predictions import (MissingPredictionsWarning, PredictionFileError, Predictions,
                                     read_prediction_file, read_predictions, write_prediction_file)
from ffcore.eval.protocol import (EvalResult, SettingResult, evaluate, recall_by_face_size, score_thresholds,
                                  voc_ap)

__all__ = [
    "SETTINGS", "GroundTruth", "GroundTruthError", "load_ground_truth",
    "MissingPredictionsWarning", "PredictionFileError", "Predictions", "read_prediction_file",
    "read_predictions", "write_prediction_file",
    "EvalResult", "SettingResult", "evaluate", "recall_by_face_size", "score_thresholds", "voc_ap",
    "evaluate_directory",
]


def evaluate_directory(pred_dir: str | Path, gt_dir: str | Path, strict: bool = False, label: str = "") -> EvalResult:
    """Read the ground truth and a prediction folder, and evaluate."""
    ground_truth = load_ground_truth(gt_dir)
    predictions = read_predictions(pred_dir, ground_truth, strict=strict)
    return evaluate(predictions, ground_truth, label=label or Path(pred_dir).name)
