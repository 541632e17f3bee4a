"""Peer face detectors for the latency comparison (optional extra `ffcore[peers]`).

MTCNN (facenet-pytorch), BlazeFace (mediapipe 0.10.21, which ships its model files),
the OpenCV Haar cascade (needs the cascade files that `opencv-python` < 5 installs under
`cv2.data`) and dlib's HOG detector (dlib-bin). All ship their weights inside the package,
so nothing is downloaded. A peer that is not installed, or cannot start, is skipped with
the reason; it never raises.

Each peer is a `Peer` whose `detect(image_bgr)` runs the whole pipeline (conversion,
detection, the peer's own post-processing) on one BGR uint8 image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass
class Peer:
    name: str
    detect: Callable[[np.ndarray], object]
    backend: str
    file_bytes: int | None = None
    note: str = ""


def _rgb(image_bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image_bgr[:, :, ::-1])


def _files_bytes(paths) -> int | None:
    sizes = [Path(p).stat().st_size for p in paths if Path(p).is_file()]
    return sum(sizes) if sizes else None


def mtcnn() -> Peer:
    from facenet_pytorch import MTCNN
    import facenet_pytorch
    import torch

    detector = MTCNN(keep_all=True, device="cpu")
    weights = list((Path(facenet_pytorch.__file__).parent / "data").glob("*.pt"))

    def detect(image_bgr):
        with torch.inference_mode():
            return detector.detect(_rgb(image_bgr))

    return Peer("mtcnn", detect, "torch (facenet-pytorch)", _files_bytes(weights),
                "P/R/O-Net cascade; time includes its image pyramid and NMS")


def blazeface() -> Peer:
    import mediapipe as mp

    solution = mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5)
    models = list((Path(mp.__file__).parent / "modules" / "face_detection").glob("*.tflite"))

    def detect(image_bgr):
        return solution.process(_rgb(image_bgr))

    return Peer("blazeface", detect, "tflite (mediapipe)", _files_bytes(models),
                "short-range model, 128x128 input: the image is downscaled inside")


def haar_cascade() -> Peer:
    import cv2

    data = getattr(cv2, "data", None)
    if data is None:
        raise RuntimeError(f"OpenCV {cv2.__version__} ships no cv2.data cascade files "
                           "(they are absent from OpenCV 5 wheels; install opencv-python-headless<5)")
    path = Path(data.haarcascades) / "haarcascade_frontalface_default.xml"
    classifier = cv2.CascadeClassifier(str(path))
    if classifier.empty():
        raise RuntimeError(f"cannot load the Haar cascade {path}")

    def detect(image_bgr):
        gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
        return classifier.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5)

    return Peer("haar_cascade", detect, "opencv", _files_bytes([path]), "Viola-Jones, scale factor 1.1")


def dlib_hog() -> Peer:
    import dlib

    detector = dlib.get_frontal_face_detector()

    def detect(image_bgr):
        return detector(_rgb(image_bgr), 0)

    return Peer("dlib_hog", detect, "dlib", None, "HOG + linear SVM, no upsampling (misses faces < 80 px)")


PEER_FACTORIES: dict[str, Callable[[], Peer]] = {
    "mtcnn": mtcnn, "blazeface": blazeface, "haar_cascade": haar_cascade, "dlib_hog": dlib_hog,
}


def load_peers(names=None) -> tuple[list[Peer], dict[str, str]]:
    """The peers that start here, and {name: reason} for the ones skipped."""
    loaded, skipped = [], {}
    for name in names or PEER_FACTORIES:
        try:
            loaded.append(PEER_FACTORIES[name]())
        except ImportError as error:
            skipped[name] = f"not installed ({error.name or error}); `pip install ffcore[peers]`"
        except Exception as error:  # a peer that fails to start must not stop the benchmark
            skipped[name] = f"{type(error).__name__}: {error}"
    return loaded, skipped
