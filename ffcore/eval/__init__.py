"""WIDER FACE evaluation: prediction files, the official protocol, inference.

The ground truth is read by `ffcore.data.ground_truth` (data sits below evaluation, and the
validation index reads the same files); its names are re-exported here, so
`load_ground_truth(dir)` + `read_predictions(dir, gt)` + `evaluate(preds, gt)` is the
whole evaluation; `ffcore.eval.predict` writes prediction files for a model,
`ffcore.eval.detect` runs a model on ordinary images, `ffcore.eval.plots` draws curves.
"""

from __future__ import annotations

import json
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
    "evaluate_directory", "evaluate_command",
]


def evaluate_directory(pred_dir: str | Path, gt_dir: str | Path, strict: bool = False, label: str = "") -> EvalResult:
    """Read the ground truth and a prediction folder, and evaluate."""
    ground_truth = load_ground_truth(gt_dir)
    predictions = read_predictions(pred_dir, ground_truth, strict=strict)
    return evaluate(predictions, ground_truth, label=label or Path(pred_dir).name)


def _provenance_line(pred_dir: Path) -> str:
    """Which model and test scale made the predictions (from `ffcore predict`'s metadata), if known."""
    meta_path = pred_dir / "predictions_meta.json"
    try:
        meta = json.loads(meta_path.read_text())
        return (f"predictions: {meta.get('model')} at test scale {meta.get('scale_label')} "
                f"(checkpoint {meta.get('checkpoint_sha256')})")
    except (OSError, ValueError):
        return "predictions: test scale unknown (no predictions_meta.json); say which scale produced them"


def evaluate_command(pred: str, gt: str, json_out: str | None = None, strict: bool = False) -> int:
    """`ffcore evaluate`: print the AP table; optionally write {"easy", "medium", "hard"} (fractions)."""
    import warnings

    with warnings.catch_warnings():
        # The summary reports missing files itself; one line there is enough.
        warnings.simplefilter("ignore", MissingPredictionsWarning)
        try:
            result = evaluate_directory(pred, gt, strict=strict)
        except (GroundTruthError, PredictionFileError) as exc:
            print(f"error: {exc}")
            return 2
    print(result.summary())
    print(_provenance_line(Path(pred)))
    if json_out:
        path = Path(json_out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        print(f"wrote {path}")
    return 0
