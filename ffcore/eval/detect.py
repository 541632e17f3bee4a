"""Face detection on ordinary images: JSON records and annotated pictures.

Detection runs at the image's own size (resize 1), as the reference `detect.py` does with
`--origin_size`, and keeps boxes scoring at least `threshold`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ffcore.checkpoint import CheckpointError
from ffcore.eval.inference import detect_image
from ffcore.paths import shared_dir
from ffcore.postprocess import Detections
from ffcore.preprocess import ImageReadError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEFAULT_THRESHOLD = 0.5
# BGR colours of the five landmarks: left eye, right eye, nose, left and right mouth corner.
LANDMARK_COLOURS = ((0, 0, 255), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 0, 0))
BOX_COLOUR = (0, 0, 255)

# Weights a model falls back to when none are given (files shipped beside the repository).
DEFAULT_WEIGHTS = {"retinaface_mnet025": ("weights", "retinaface_mnet025_widerface.pth"),
                   # the released V1, trained on WIDER FACE by the paper authors' code
                   "featherface_v1": ("weights", "featherface_v1_widerface.pth")}


def resolve_weights(model_name: str, weights: str | Path | None) -> Path:
    """The weights file to use: the one given, else the model's shipped default."""
    from ffcore.models.registry import model_entry

    model_entry(model_name)   # an unknown name says so (listing the registered ones) before anything else
    if weights is not None:
        return Path(weights)
    if model_name not in DEFAULT_WEIGHTS:
        raise CheckpointError(f"no weights given for {model_name!r}: pass --weights <checkpoint> "
                              "(an untrained detector finds nothing useful)")
    return shared_dir().joinpath(*DEFAULT_WEIGHTS[model_name])


def load_detector(model_name: str, weights: str | Path | None = None, device: str | torch.device = "cpu"):
    """A registered model with trained weights, in eval mode on `device`."""
    from ffcore.models import load_pretrained

    return load_pretrained(model_name, resolve_weights(model_name, weights)).to(device).eval()


def detect_faces(model: torch.nn.Module, image_bgr: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
                 device: str | torch.device = "cpu") -> Detections:
    """Faces at the original image size scoring >= threshold, sorted by descending score."""
    return detect_image(model, image_bgr, scale="origin", device=device).above(threshold)


def draw_detections(image_bgr: np.ndarray, detections: Detections) -> np.ndarray:
    """A copy of the image with boxes, scores and the five landmarks drawn."""
    import cv2

    canvas = image_bgr.copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 600))
    for box, score, landmarks in zip(detections.boxes.tolist(), detections.scores.tolist(),
                                     detections.landmarks.tolist()):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), BOX_COLOUR, thickness)
        cv2.putText(canvas, f"{score:.2f}", (x1, max(y1 - 3, 10)), cv2.FONT_HERSHEY_DUPLEX,
                    0.4 * thickness, (255, 255, 255), 1, cv2.LINE_AA)
        for k, colour in enumerate(LANDMARK_COLOURS):
            cv2.circle(canvas, (int(round(landmarks[2 * k])), int(round(landmarks[2 * k + 1]))),
                       thickness + 1, colour, -1)
    return canvas


def image_files(path: Path) -> list[Path]:
    """The image files of a folder (sorted), or the one file given; a missing path or an empty folder raises."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ImageReadError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
        return files
    if not path.exists():
        raise ImageReadError(f"image not found: {path}")
    return [path]
