"""Prediction files in the WIDER FACE evaluation layout: `<dir>/<event>/<image>.txt`.

Each file holds the image name, the box count, then one `x y w h score` line per box
(top-left corner, width, height, in pixels of the original image).

Prediction folders come from other programs too, so the reader trusts nothing: bytes that
are not UTF-8 text, a count that is not a whole number or disagrees with the lines, a
non-number, NaN or an infinite value each raise `PredictionFileError` naming the file and
line; no file is half-read into a wrong AP. What the protocol tolerates is counted instead:
missing files (images without detections), empty files and files of unknown images.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from ffcore.data.ground_truth import GroundTruth


class PredictionFileError(ValueError):
    """A prediction file that is missing (strict mode) or malformed."""


class MissingPredictionsWarning(UserWarning):
    """Some images of the ground truth have no prediction file; they count as images without detections."""


EMPTY = np.zeros((0, 5), dtype=np.float64)

# The JSON beside a prediction folder's files saying which model, checkpoint, test scale and
# thresholds made them (written by `ffcore.eval.predict`; read by `ffcore evaluate`, which needs
# no deep-learning stack).
METADATA_FILE = "predictions_meta.json"


def sort_by_score(boxes: np.ndarray) -> np.ndarray:
    """Rows by descending score; equal scores keep their file order (MATLAB's stable `sort(..., 'descend')`)."""
    if boxes.shape[0] < 2:
        return boxes
    order = np.argsort(-boxes[:, 4], kind="stable")
    return boxes[order]


@dataclass
class Predictions:
    """Detections of every ground-truth image, in the ground truth's image order.

    `per_image[i]` is [k, 5] float64 (x, y, w, h, score) sorted by descending score.
    `missing` lists the "event/name" of images that had no prediction file, `empty_files`
    those whose file was empty (both are treated as images without detections), and
    `extra_files` the .txt files of images the ground truth does not list (not evaluated).
    """

    per_image: list[np.ndarray]
    missing: list[str] = field(default_factory=list)
    empty_files: list[str] = field(default_factory=list)
    extra_files: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def num_boxes(self) -> int:
        return int(sum(b.shape[0] for b in self.per_image))

    @classmethod
    def from_mapping(cls, mapping: Mapping[tuple[str, str], np.ndarray], ground_truth: GroundTruth) -> "Predictions":
        """Build from {(event, image name): [k, 5] x, y, w, h, score}; absent images have no detections."""
        per_image, missing = [], []
        for event, name in zip(ground_truth.events, ground_truth.names):
            boxes = mapping.get((event, name))
            if boxes is None:
                missing.append(f"{event}/{name}")
                per_image.append(EMPTY)
                continue
            boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
            per_image.append(sort_by_score(boxes))
        return cls(per_image=per_image, missing=missing)


def _parse_box_lines(lines: list[str], path: Path, first_line_number: int) -> np.ndarray:
    """Parse `x y w h score` lines; on any problem, find the offending line and name it."""
    tokens = " ".join(lines).split()
    try:
        values = np.array(tokens, dtype=np.float64)
        if values.size == 5 * len(lines):
            boxes = values.reshape(-1, 5)
            if np.isfinite(boxes).all():
                return boxes
    except ValueError:
        pass
    for offset, line in enumerate(lines):
        fields = line.split()
        line_number = first_line_number + offset
        if len(fields) != 5:
            raise PredictionFileError(f"{path}, line {line_number}: expected 5 numbers 'x y w h score', "
                                      f"got {len(fields)} field(s): {line.strip()!r}")
        try:
            numbers = [float(v) for v in fields]
        except ValueError:
            raise PredictionFileError(f"{path}, line {line_number}: not a number in {line.strip()!r}") from None
        if not all(np.isfinite(numbers)):
            raise PredictionFileError(f"{path}, line {line_number}: NaN or infinite value in {line.strip()!r}")
    raise AssertionError("unreachable: a parse failure must be attributable to a line")


def _decode(data: bytes, path) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PredictionFileError(f"{path}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}): a binary "
                                  "file, or text in another encoding") from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise PredictionFileError(f"{path}, line {line}: binary data (a NUL byte) in a prediction file")
    return text


def _box_count(text: str, path) -> int:
    """The line-2 count: a whole number >= 0 ("3" or "3.0", as some writers print it)."""
    try:
        value = float(text)
    except ValueError:
        raise PredictionFileError(f"{path}, line 2: the box count is not a number: {text!r}") from None
    if not np.isfinite(value) or value != int(value) or value < 0:
        raise PredictionFileError(f"{path}, line 2: the box count must be a whole number >= 0, got {text!r}")
    return int(value)


def read_prediction_file(path: str | Path) -> np.ndarray | None:
    """Boxes [k, 5] of one file in file order; None for a completely empty file."""
    # Plain strings and open(): with thousands of small files, pathlib's overhead shows.
    with open(path, "rb") as handle:
        lines = _decode(handle.read(), path).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return None
    if len(lines) < 2:
        raise PredictionFileError(f"{path}: expected the image name on line 1 and the box count on line 2, "
                                  "the file ends after line 1")
    count = _box_count(lines[1].strip(), path)
    box_lines = lines[2:]
    if count != len(box_lines):
        raise PredictionFileError(f"{path}, line 2: announces {count} box(es) but {len(box_lines)} box line(s) "
                                  "follow; rewrite the file (count line = number of box lines)")
    if count == 0:
        return EMPTY
    return _parse_box_lines(box_lines, path, first_line_number=3)


def read_predictions(pred_dir: str | Path, ground_truth: GroundTruth, strict: bool = False) -> Predictions:
    """Read `<pred_dir>/<event>/<image>.txt` for every ground-truth image.

    Boxes are sorted by descending score per image. A missing file is an error when
    `strict`, otherwise a `MissingPredictionsWarning` (the image has no detections,
    as in the MATLAB toolbox) and the image is listed in `Predictions.missing`.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise PredictionFileError(f"prediction folder not found: {pred_dir}")
    per_image, missing, empty_files = [], [], []
    for event, name in zip(ground_truth.events, ground_truth.names):
        path = os.path.join(pred_dir, event, f"{name}.txt")
        try:
            boxes = read_prediction_file(path)
        except FileNotFoundError:
            if strict:
                raise PredictionFileError(f"prediction file missing: {path} (run without --strict to treat "
                                          "missing files as images without detections)") from None
            missing.append(f"{event}/{name}")
            per_image.append(EMPTY)
            continue
        if boxes is None:
            empty_files.append(f"{event}/{name}")
            boxes = EMPTY
        per_image.append(sort_by_score(boxes))
    expected = {f"{event}/{name}.txt" for event, name in zip(ground_truth.events, ground_truth.names)}
    extra_files = sorted(f"{event_dir.name}/{entry.name}" for event_dir in os.scandir(pred_dir) if event_dir.is_dir()
                         for entry in os.scandir(event_dir.path)
                         if entry.name.endswith(".txt") and f"{event_dir.name}/{entry.name}" not in expected)
    if missing:
        warnings.warn(f"{len(missing)} of {ground_truth.num_images} prediction files missing under {pred_dir} "
                      f"(first: {missing[0]}.txt); they count as images without detections",
                      MissingPredictionsWarning, stacklevel=2)
    return Predictions(per_image=per_image, missing=missing, empty_files=empty_files, extra_files=extra_files,
                       source=str(pred_dir))


def format_prediction_file(image_name: str, boxes_xywh_score: np.ndarray, integer_boxes: bool = True) -> str:
    """Text of one prediction file.

    `integer_boxes` truncates x, y and the corners to integers before taking w, h, as the
    reference `test_widerface.py` scripts do, so APs stay comparable with theirs.
    """
    boxes = np.asarray(boxes_xywh_score, dtype=np.float64).reshape(-1, 5)
    lines = [image_name, str(boxes.shape[0])]
    if integer_boxes:
        x1, y1 = np.trunc(boxes[:, 0]), np.trunc(boxes[:, 1])
        x2, y2 = np.trunc(boxes[:, 0] + boxes[:, 2]), np.trunc(boxes[:, 1] + boxes[:, 3])
        for x, y, w, h, s in zip(x1, y1, x2 - x1, y2 - y1, boxes[:, 4]):
            lines.append(f"{int(x)} {int(y)} {int(w)} {int(h)} {s:.9g}")
    else:
        lines.extend(f"{x:.2f} {y:.2f} {w:.2f} {h:.2f} {s:.9g}" for x, y, w, h, s in boxes)
    return "\n".join(lines) + "\n"


def write_prediction_file(pred_dir: str | Path, event: str, image_name: str, boxes_xywh_score: np.ndarray,
                          integer_boxes: bool = True) -> Path:
    """Write `<pred_dir>/<event>/<image_name>.txt` (creating the event folder)."""
    path = Path(pred_dir) / event / f"{image_name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_prediction_file(image_name, boxes_xywh_score, integer_boxes))
    return path
