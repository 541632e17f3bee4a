"""Peer face detectors for the latency comparison, run in their own environment (`make peers`).

MTCNN (facenet-pytorch), BlazeFace and its full-range variant (mediapipe 0.10.21, which
ships its model files), the OpenCV Haar cascade (needs the cascade files that OpenCV < 5
installs under `cv2.data`) and dlib's HOG detector (dlib-bin). All ship their weights inside the package,
so nothing is downloaded. Their pins (numpy < 2, protobuf < 5, OpenCV 4) do not fit the
main environment, so they live in `.venv-peers` (requirements-peers.txt); in the main
environment `load_peers` reports every peer as skipped with the reason.

Each peer is a `Peer` whose `detect(image_bgr)` runs the whole pipeline (conversion,
detection, the peer's own post-processing) on one BGR uint8 image and returns the
detections as a float32 array [n, 5]: x1, y1, x2, y2 in pixels of that image, and the
peer's confidence (NaN for the Haar cascade, which gives none). Turning each library's
output into that array is part of the timed pipeline; it costs microseconds.

This module imports only numpy at load time, so the main environment can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

PEERS_SETUP_HINT = "run `make peers` and use .venv-peers/bin/python (requirements-peers.txt)"


@dataclass(frozen=True)
class Peer:
    name: str
    detect: Callable[[np.ndarray], np.ndarray]
    backend: str
    file_bytes: int | None = None
    note: str = ""
    threshold: str = ""      # the peer's own operating point, as used here


def _rgb(image_bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image_bgr[:, :, ::-1])


def _files_bytes(paths) -> int | None:
    sizes = [Path(p).stat().st_size for p in paths if Path(p).is_file()]
    return sum(sizes) if sizes else None


def _boxes(rows) -> np.ndarray:
    """Rows of (x1, y1, x2, y2, score) as a float32 [n, 5] array (an empty [0, 5] when none)."""
    array = np.asarray(rows, dtype=np.float32)
    return array.reshape(-1, 5)


def mtcnn() -> Peer:
    from facenet_pytorch import MTCNN
    import facenet_pytorch
    import torch

    # facenet-pytorch's defaults: min_face_size 20, thresholds (0.6, 0.7, 0.7), pyramid factor 0.709.
    detector = MTCNN(keep_all=True, device="cpu")
    weights = list((Path(facenet_pytorch.__file__).parent / "data").glob("*.pt"))

    def detect(image_bgr: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            boxes, probs = detector.detect(_rgb(image_bgr))
        if boxes is None:   # facenet-pytorch returns None, not an empty array, when it finds no face
            return _boxes([])
        return _boxes(np.concatenate([boxes, np.asarray(probs, dtype=np.float32)[:, None]], axis=1))

    return Peer("mtcnn", detect, "torch (facenet-pytorch)", _files_bytes(weights),
                "P/R/O-Net cascade; time includes its image pyramid and NMS",
                "stage thresholds 0.6/0.7/0.7, min face 20 px")


def _mediapipe_face_detection(model_selection: int):
    import mediapipe as mp

    solutions = getattr(mp, "solutions", None)
    if solutions is None:
        raise RuntimeError(f"mediapipe {mp.__version__} has no `solutions` API (removed after 0.10.21); "
                           f"{PEERS_SETUP_HINT}")
    solution = solutions.face_detection.FaceDetection(model_selection=model_selection,
                                                      min_detection_confidence=0.5)
    pattern = "*short_range*.tflite" if model_selection == 0 else "*full_range*.tflite"
    models = list((Path(mp.__file__).parent / "modules" / "face_detection").glob(pattern))

    def detect(image_bgr: np.ndarray) -> np.ndarray:
        height, width = image_bgr.shape[:2]
        result = solution.process(_rgb(image_bgr))
        rows = []
        for detection in result.detections or ():
            box = detection.location_data.relative_bounding_box
            x1, y1 = box.xmin * width, box.ymin * height
            rows.append((x1, y1, x1 + box.width * width, y1 + box.height * height, detection.score[0]))
        return _boxes(rows)

    return detect, _files_bytes(models)


def blazeface() -> Peer:
    # model_selection=0 is BlazeFace itself (the 128x128 short-range model of the BlazeFace paper),
    # made for faces within about 2 m of a phone camera.
    detect, size = _mediapipe_face_detection(0)
    return Peer("blazeface", detect, "tflite (mediapipe)", size,
                "short-range model, 128x128 input: the image is downscaled inside", "score >= 0.5")


def blazeface_full_range() -> Peer:
    # mediapipe's full-range variant (192x192 input, sparse weights) for faces up to about 5 m.
    detect, size = _mediapipe_face_detection(1)
    return Peer("blazeface_full_range", detect, "tflite (mediapipe)", size,
                "full-range model, 192x192 input: the image is downscaled inside", "score >= 0.5")


def haar_cascade() -> Peer:
    import cv2

    # OpenCV 5 wheels dropped the cascade module and its files (cv2.data may remain, empty).
    data = getattr(cv2, "data", None)
    path = Path(data.haarcascades) / "haarcascade_frontalface_default.xml" if data is not None else None
    if not hasattr(cv2, "CascadeClassifier") or path is None or not path.is_file():
        raise RuntimeError(f"OpenCV {cv2.__version__} has no Haar cascade (classifier or "
                           f"haarcascade_frontalface_default.xml); {PEERS_SETUP_HINT}")
    classifier = cv2.CascadeClassifier(str(path))
    if classifier.empty():
        raise RuntimeError(f"cannot load the Haar cascade {path}")

    def detect(image_bgr: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
        found = classifier.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5)
        return _boxes([(x, y, x + w, y + h, np.nan) for x, y, w, h in found])

    return Peer("haar_cascade", detect, "opencv", _files_bytes([path]), "Viola-Jones, scale factor 1.1",
                "minNeighbors 5 (no score)")


def dlib_hog() -> Peer:
    import dlib

    detector = dlib.get_frontal_face_detector()

    def detect(image_bgr: np.ndarray) -> np.ndarray:
        # run() is what detector(image, 0) runs, and also returns the SVM scores (threshold 0).
        rectangles, scores, _ = detector.run(_rgb(image_bgr), 0, 0.0)
        return _boxes([(r.left(), r.top(), r.right() + 1, r.bottom() + 1, s) for r, s in zip(rectangles, scores)])

    return Peer("dlib_hog", detect, "dlib", None, "HOG + linear SVM, no upsampling (misses faces < 80 px)",
                "SVM score >= 0")


PEER_FACTORIES: dict[str, Callable[[], Peer]] = {
    "mtcnn": mtcnn, "blazeface": blazeface, "blazeface_full_range": blazeface_full_range,
    "haar_cascade": haar_cascade, "dlib_hog": dlib_hog,
}


def load_peers(names=None) -> tuple[list[Peer], dict[str, str]]:
    """The peers that start here, and {name: reason} for the ones skipped.

    A peer whose library is missing (ImportError), whose model files cannot be read (OSError)
    or that reports its own unsuitability (RuntimeError) is skipped; any other error is a bug
    and propagates."""
    loaded, skipped = [], {}
    for name in names or PEER_FACTORIES:
        if name not in PEER_FACTORIES:
            raise KeyError(f"unknown peer {name!r}; choose from {sorted(PEER_FACTORIES)}")
        try:
            loaded.append(PEER_FACTORIES[name]())
        except ImportError as error:
            skipped[name] = f"not installed ({error.name or error}); {PEERS_SETUP_HINT}"
        except (OSError, RuntimeError) as error:
            skipped[name] = f"{type(error).__name__}: {error}"
    return loaded, skipped
