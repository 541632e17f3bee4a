"""`ffcore predict`, `ffcore evaluate` and `ffcore detect`."""

from __future__ import annotations

import json
from pathlib import Path

from ffcore.cli.common import MODEL_HELP, registered_model, show_loading_notes, write_json


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="WIDER FACE AP (easy/medium/hard) of a prediction folder",
                       description="Evaluate prediction files (<event>/<image>.txt) against the official WIDER FACE "
                                   "ground truth (.mat files) with the official protocol.")
    p.add_argument("--pred", required=True, help="prediction folder (<event>/<image>.txt)")
    p.add_argument("--gt", required=True, help="folder with wider_face_val.mat and wider_{easy,medium,hard}_val.mat")
    p.add_argument("--json", dest="json_out", default=None, help="write {\"easy\", \"medium\", \"hard\"} APs here")
    p.add_argument("--strict", action="store_true", help="a missing prediction file is an error, not a warning")
    p.set_defaults(handler=evaluate_command)


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="write WIDER-format predictions for a validation tree",
                       description="Run a model over WIDER_val/images and write <event>/<image>.txt prediction "
                                   "files plus a metadata JSON (model, checkpoint hash, scale, thresholds); "
                                   "evaluate them when the dataset has the evaluation ground truth.")
    p.add_argument("--model", required=True, type=registered_model, help=MODEL_HELP)
    p.add_argument("--weights", default=None, help="checkpoint (ffcore or original layout)")
    p.add_argument("--data", default=None, help="dataset root (default data/widerface)")
    p.add_argument("--out", required=True, help="output folder for prediction files")
    p.add_argument("--scale", default="origin",
                   help="origin | vga | <int> (long side) | short1600max2150 (Pytorch_Retinaface's test scale) "
                        "(default origin)")
    p.add_argument("--caps", default="none", choices=("none", "fork"),
                   help="detection caps: none (the released test scripts) or fork (top 5000 before NMS, "
                        "750 kept after, as the thesis fork's script) (default none)")
    p.add_argument("--multiscale", action="store_true", help="add passes at 0.5x and 1.5x the test scale")
    p.add_argument("--flip", action="store_true", help="add horizontally flipped passes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (quick checks; no AP)")
    p.add_argument("--gt", default=None, help="ground-truth folder to evaluate against (default: the dataset's)")
    p.set_defaults(handler=predict_command)


def add_detect(sub) -> None:
    p = sub.add_parser("detect", help="detect faces in an image or a folder of images",
                       description="Detect faces; write a JSON list of {box, score, landmarks} in pixels and/or "
                                   "an annotated image.")
    p.add_argument("--model", required=True, type=registered_model, help=MODEL_HELP)
    p.add_argument("--weights", default=None, help="checkpoint (ffcore or original layout)")
    p.add_argument("--image", required=True, help="image file or folder of images")
    p.add_argument("--json", dest="json_out", default=None, help="output JSON (a folder when --image is a folder)")
    p.add_argument("--save", default=None, help="annotated image (a folder when --image is a folder)")
    p.add_argument("--threshold", type=float, default=0.5, help="minimum score written and drawn (default 0.5)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler=detect_command)


def _provenance_line(pred_dir: Path) -> str:
    """Which model and test scale made the predictions (from `ffcore predict`'s metadata), if known."""
    from ffcore.eval.predictions import METADATA_FILE

    try:
        meta = json.loads((pred_dir / METADATA_FILE).read_text())
        return (f"predictions: {meta.get('model')} at test scale {meta.get('scale_label')} "
                f"(checkpoint {meta.get('checkpoint_sha256')})")
    except (OSError, ValueError):
        return f"predictions: test scale unknown (no {METADATA_FILE}); say which scale produced them"


def evaluate_command(pred: str, gt: str, json_out: str | None = None, strict: bool = False) -> int:
    """`ffcore evaluate`: print the AP table; optionally write {"easy", "medium", "hard"} (fractions)."""
    import warnings

    from ffcore.eval import GroundTruthError, MissingPredictionsWarning, PredictionFileError, evaluate_directory

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
        path = write_json(json_out, json.dumps(result.to_dict(), indent=2) + "\n")
        print(f"wrote {path}")
    return 0


def predict_command(model: str, weights: str | None, data: str | None, out: str, scale: str = "origin",
                    multiscale: bool = False, flip: bool = False, device: str = "cpu", limit: int | None = None,
                    gt: str | None = None, caps: str = "none") -> int:
    """`ffcore predict`: write prediction files (and evaluate them when the ground truth is there)."""
    from ffcore.checkpoint import CheckpointError
    from ffcore.data.layout import LayoutError, WiderFaceLayout
    from ffcore.eval.detect import load_detector, resolve_weights
    from ffcore.eval.inference import parse_scale
    from ffcore.eval.predict import predict_widerface
    from ffcore.preprocess import ImageReadError

    show_loading_notes()
    try:
        scale = parse_scale(scale)
        weights_path = resolve_weights(model, weights)
        detector = load_detector(model, weights_path, device)
        run = predict_widerface(detector, data, out, scale=scale, multiscale=multiscale, flip=flip, device=device,
                                limit=limit, checkpoint=weights_path, caps=caps)
    except (LayoutError, CheckpointError, ImageReadError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
    print(f"wrote {run.metadata['images']} prediction files ({run.metadata['boxes']} boxes, scale "
          f"{run.scale}, detection caps {run.metadata['detection_caps']}) to {run.out_dir} "
          f"in {run.metadata['seconds']} s")
    gt_dir = Path(gt) if gt else WiderFaceLayout.discover(data).ground_truth_dir
    if gt_dir is not None and limit is None:
        print(f"evaluating against {gt_dir}")
        return evaluate_command(str(run.out_dir), str(gt_dir))
    return 0


def detect_command(model: str, weights: str | None, image: str, json_out: str | None = None,
                   save: str | None = None, threshold: float = 0.5, device: str = "cpu") -> int:
    """`ffcore detect`: one image -> one JSON / PNG; a folder -> a JSON and a PNG per image in folders."""
    from ffcore.checkpoint import CheckpointError
    from ffcore.eval.detect import detect_faces, draw_detections, image_files, load_detector
    from ffcore.preprocess import ImageReadError, read_image

    source = Path(image)
    show_loading_notes()
    try:
        files = image_files(source)
        detector = load_detector(model, weights, device)
    except (ImageReadError, CheckpointError) as exc:
        print(f"error: {exc}")
        return 2
    folder_mode = source.is_dir()
    for path in files:
        try:
            picture = read_image(path)
        except ImageReadError as exc:
            print(f"error: {exc}")
            return 2
        detections = detect_faces(detector, picture, threshold, device)
        print(f"{path}: {len(detections)} face(s) with score >= {threshold}")
        if json_out:
            target = Path(json_out) / f"{path.stem}.json" if folder_mode else Path(json_out)
            write_json(target, json.dumps(detections.to_records(), indent=1) + "\n")
        if save:
            import cv2

            target = Path(save) / f"{path.stem}.png" if folder_mode else Path(save)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(target), draw_detections(picture, detections)):
                print(f"error: cannot write {target} (unknown image extension?)")
                return 2
    return 0
