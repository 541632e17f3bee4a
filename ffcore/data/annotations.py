"""Parsers for the two WIDER FACE training annotation formats.

- RetinaFace `label.txt`: `# <relative image path>` then one line per face,
  `x y w h` + five landmark triples `lx ly flag` + a confidence (20 numbers; 19 and 4
  are accepted too). Landmark values of -1 mean the face has no landmarks.
- Official `wider_face_split/wider_face_{train,val}_bbx_gt.txt`: image path line, face
  count line (a count of 0 is followed by one all-zero line), then per face
  `x1 y1 w h blur expression illumination invalid occlusion pose`.

Both parse into `ImageAnnotation`s with boxes in pixel point form (x1, y1, x2, y2).
Annotation files come from elsewhere (downloads, other tools), so nothing in one is trusted:
a malformed line (bytes that are not UTF-8 text, a non-number, NaN or an infinite or
absurdly large number, a wrong count, an image path that leaves the images folder) raises
`AnnotationFormatError` naming the file and line. Boxes with a width or height <= 0 are
dropped, as the protocol does, and counted in the returned `ParseReport` (and logged).
"""

from __future__ import annotations

import codecs
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np

log = logging.getLogger("ffcore.data")

# Column order of the per-face attributes in the official bbx_gt lists.
WIDER_ATTRIBUTES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
# No image is this large (JPEG and PNG sides stop at 65,535 pixels): a coordinate beyond it is
# a damaged file, and as float32 arithmetic it would turn into inf or NaN losses.
MAX_ABS_COORDINATE = 1e6
# The official evaluation files store the attributes as uint8.
MAX_ATTRIBUTE = 255


class AnnotationFormatError(ValueError):
    """A line of an annotation file that does not follow its format."""

    def __init__(self, path: Path | str, line_number: int, problem: str, line: str | None = None):
        where = f"{path}:{line_number}"
        shown = f"\n  line: {line.rstrip()!r}" if line is not None else ""
        super().__init__(f"{where}: {problem}{shown}\n  (fix or remove this line; the format is described in "
                         f"ARCHITECTURES.md, 'Annotation formats')")
        self.path, self.line_number = Path(path), line_number


@dataclass
class ImageAnnotation:
    """The faces of one image. `path` is relative to the split's images folder."""

    path: str
    boxes: np.ndarray                 # float32 [n, 4] pixels, x1 y1 x2 y2
    landmarks: np.ndarray             # float32 [n, 10] pixels, -1 where absent
    has_landmarks: np.ndarray         # bool [n]
    attributes: np.ndarray | None = None   # int32 [n, 6] (WIDER_ATTRIBUTES) for bbx_gt files
    source: str | None = None         # "file:line" of the image's line, for error messages

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def event(self) -> str:
        return self.path.split("/")[0] if "/" in self.path else ""

    def targets_pixels(self) -> np.ndarray:
        """float32 [n, 15]: box, ten landmark coordinates, label (1, or -1 without landmarks)."""
        labels = np.where(self.has_landmarks, 1.0, -1.0).astype(np.float32)[:, None]
        return np.concatenate([self.boxes, self.landmarks, labels], axis=1).astype(np.float32)


@dataclass
class ParseReport:
    """What a parser read and what it dropped (nothing is skipped silently)."""

    path: Path
    images: int = 0
    faces: int = 0
    images_without_faces: int = 0
    dropped_boxes: int = 0
    dropped_examples: list[str] = field(default_factory=list)   # "file:line" of the first drops

    def note_dropped(self, line_number: int) -> None:
        self.dropped_boxes += 1
        if len(self.dropped_examples) < 5:
            self.dropped_examples.append(f"{self.path}:{line_number}")

    def log_summary(self) -> None:
        if self.dropped_boxes:
            log.warning("%s: dropped %d boxes with width or height <= 0 (first at %s)",
                        self.path, self.dropped_boxes, ", ".join(self.dropped_examples))

    def summary(self) -> str:
        return (f"{self.path.name}: {self.images} images, {self.faces} faces, "
                f"{self.images_without_faces} images without faces, {self.dropped_boxes} zero-size boxes dropped")


def read_text_lines(path: Path, error: Callable[[int, str], Exception]) -> list[str]:
    """The lines of a UTF-8 text file (a leading BOM is ignored), numbered from 1 by position.

    Bytes that are not UTF-8 (another encoding, a binary file) or a NUL byte raise
    `error(line_number, problem)`; only "\n", "\r\n" and "\r" end lines, so the numbers
    match what an editor shows.
    """
    data = Path(path).read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = data.rfind(b"\n", 0, exc.start) + 1
        line_number = data.count(b"\n", 0, exc.start) + 1
        raise error(line_number, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at column {exc.start - start + 1}): "
                                 f"a binary file, or text in another encoding; save it as UTF-8") from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if "\x00" in text:
        line_number = next(n for n, line in enumerate(lines, start=1) if "\x00" in line)
        raise error(line_number, "binary data (a NUL byte) in a text file")
    return lines


def _text_lines(path: Path) -> list[tuple[int, str]]:
    def error(line_number: int, problem: str) -> AnnotationFormatError:
        return AnnotationFormatError(path, line_number, problem)

    return list(enumerate(read_text_lines(path, error), start=1))


def _numbers(path: Path, line_number: int, line: str) -> list[float]:
    try:
        values = [float(token) for token in line.split()]
    except ValueError:
        raise AnnotationFormatError(path, line_number, "expected numbers only", line) from None
    # fast path (built-ins only; a WIDER label.txt has ~160k lines): a NaN or inf makes the sum non-finite,
    # and without them min and max are exact
    if not values or (math.isfinite(sum(values)) and -MAX_ABS_COORDINATE <= min(values)
                      and max(values) <= MAX_ABS_COORDINATE):
        return values
    for value in values:
        if not math.isfinite(value):
            raise AnnotationFormatError(path, line_number, f"{value} is not a finite number", line)
        if abs(value) > MAX_ABS_COORDINATE:
            raise AnnotationFormatError(path, line_number, f"{value:g} is beyond +-{MAX_ABS_COORDINATE:g}, "
                                                           f"larger than any image", line)
    return values


def _image_path(path: Path, line_number: int, line: str, relative: str) -> str:
    """A relative image path that stays inside the images folder (prediction files are written by its parts)."""
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    if relative.startswith(("/", "\\")) or (parts and parts[0].endswith(":")) or ".." in parts:
        raise AnnotationFormatError(path, line_number, f"image path {relative!r} must be relative to the images "
                                                       f"folder, without '..'", line)
    return relative


def _image_annotation(path: str, boxes: list, landmarks: list, present: list,
                      attributes: list | None = None, source: str | None = None) -> ImageAnnotation:
    return ImageAnnotation(
        path=path,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        landmarks=np.asarray(landmarks, dtype=np.float32).reshape(-1, 10),
        has_landmarks=np.asarray(present, dtype=bool).reshape(-1),
        attributes=None if attributes is None else np.asarray(attributes, dtype=np.int32).reshape(-1, 6),
        source=source,
    )


def read_retinaface_labels(path: str | Path) -> tuple[list[ImageAnnotation], ParseReport]:
    """Parse a RetinaFace `label.txt` (with or without landmarks)."""
    path = Path(path)
    report = ParseReport(path)
    annotations: list[ImageAnnotation] = []
    current: tuple[str, list, list, list, None, str] | None = None

    def close() -> None:
        if current is not None:
            annotations.append(_image_annotation(*current))

    for line_number, line in _text_lines(path):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            close()
            tokens = stripped[1:].split()
            if not tokens:
                raise AnnotationFormatError(path, line_number, "image line '#' without a path", line)
            current = (_image_path(path, line_number, line, tokens[0]), [], [], [], None, f"{path}:{line_number}")
            continue
        if current is None:
            raise AnnotationFormatError(path, line_number, "face line before the first '# <image>' line", line)
        values = _numbers(path, line_number, stripped)
        if len(values) not in (4, 19, 20):
            raise AnnotationFormatError(
                path, line_number, f"expected 4, 19 or 20 numbers (x y w h, 5 x (lx ly flag), "
                                   f"confidence), found {len(values)}", line)
        x, y, w, h = values[:4]
        if w <= 0 or h <= 0:
            report.note_dropped(line_number)
            continue
        boxes, landmarks, present = current[1:4]
        boxes.append((x, y, x + w, y + h))
        if len(values) >= 19:
            points = [values[4 + 3 * k + c] for k in range(5) for c in (0, 1)]
            # Pytorch_Retinaface's rule: a negative first landmark coordinate means "no landmarks".
            has = points[0] >= 0
        else:
            points, has = [-1.0] * 10, False
        landmarks.append(points if has else [-1.0] * 10)
        present.append(has)
    close()
    if not annotations:
        raise AnnotationFormatError(path, 1, "no '# <image path>' line: the file lists no images (is it a "
                                             "RetinaFace label.txt?)")
    _fill_report(report, annotations)
    return annotations, report


def read_wider_bbx_gt(path: str | Path) -> tuple[list[ImageAnnotation], ParseReport]:
    """Parse an official `wider_face_{train,val}_bbx_gt.txt` (boxes only: no landmarks)."""
    path = Path(path)
    report = ParseReport(path)
    annotations: list[ImageAnnotation] = []
    lines = [(number, line) for number, line in _text_lines(path) if line.strip()]
    if not lines:
        raise AnnotationFormatError(path, 1, "the file is empty: it lists no images")
    position = 0
    while position < len(lines):
        name_number, name_line = lines[position]
        image_path = name_line.strip()
        if not image_path.lower().endswith((".jpg", ".jpeg", ".png")):
            raise AnnotationFormatError(path, name_number, "expected an image path line ending in .jpg", name_line)
        image_path = _image_path(path, name_number, name_line, image_path)
        if position + 1 >= len(lines):
            raise AnnotationFormatError(path, name_number, "file ends after the image path (face count missing)")
        count_number, count_line = lines[position + 1]
        try:
            count = int(count_line.strip())
        except ValueError:
            raise AnnotationFormatError(path, count_number, "expected the face count (an integer)", count_line) from None
        if count < 0:
            raise AnnotationFormatError(path, count_number, "negative face count", count_line)
        # A count of 0 is followed by one all-zero placeholder line.
        face_lines = lines[position + 2: position + 2 + max(count, 1)]
        if len(face_lines) < max(count, 1):
            raise AnnotationFormatError(path, count_number, f"file ends before the {max(count, 1)} face line(s) "
                                                            f"announced here", count_line)
        boxes, attributes = [], []
        for face_number, face_line in face_lines:
            values = _numbers(path, face_number, face_line)
            if len(values) != 10:
                raise AnnotationFormatError(path, face_number, f"expected 10 numbers (x1 y1 w h blur expression "
                                                               f"illumination invalid occlusion pose), found "
                                                               f"{len(values)}", face_line)
            if count == 0:
                continue
            if any(v != int(v) or not 0 <= v <= MAX_ATTRIBUTE for v in values[4:]):
                raise AnnotationFormatError(path, face_number, f"the six attributes ({', '.join(WIDER_ATTRIBUTES)}) "
                                                               f"must be integers in 0..{MAX_ATTRIBUTE}", face_line)
            x, y, w, h = values[:4]
            if w <= 0 or h <= 0:
                report.note_dropped(face_number)
                continue
            boxes.append((x, y, x + w, y + h))
            attributes.append([int(v) for v in values[4:]])
        n = len(boxes)
        annotations.append(_image_annotation(image_path, boxes, [[-1.0] * 10] * n, [False] * n, attributes,
                                             source=f"{path}:{name_number}"))
        position += 2 + max(count, 1)
    _fill_report(report, annotations)
    return annotations, report


def _fill_report(report: ParseReport, annotations: list[ImageAnnotation]) -> None:
    report.images = len(annotations)
    report.faces = sum(len(a) for a in annotations)
    report.images_without_faces = sum(1 for a in annotations if len(a) == 0)
    report.log_summary()


def write_retinaface_labels(path: str | Path, annotations: list[ImageAnnotation],
                            landmark_flags: list[np.ndarray] | None = None) -> None:
    """Write annotations as a RetinaFace `label.txt` (20 numbers per face).

    `landmark_flags` (per image, [n, 5]) are written as each point's flag (0 visible,
    1 occluded); the confidence column is 1 for faces with landmarks, -1 otherwise.
    """
    with open(path, "w") as handle:
        for index, annotation in enumerate(annotations):
            handle.write(f"# {annotation.path}\n")
            for face in range(len(annotation)):
                x1, y1, x2, y2 = annotation.boxes[face]
                fields = [_fmt(x1), _fmt(y1), _fmt(x2 - x1), _fmt(y2 - y1)]
                if annotation.has_landmarks[face]:
                    flags = landmark_flags[index][face] if landmark_flags is not None else np.zeros(5)
                    for k in range(5):
                        lx, ly = annotation.landmarks[face, 2 * k: 2 * k + 2]
                        fields += [f"{lx:.3f}", f"{ly:.3f}", f"{float(flags[k]):.1f}"]
                    fields.append("1.0")
                else:
                    fields += ["-1.0"] * 16
                handle.write(" ".join(fields) + "\n")


def write_wider_bbx_gt(path: str | Path, annotations: list[ImageAnnotation]) -> None:
    """Write annotations in the official bbx_gt layout (attributes default to 0)."""
    with open(path, "w") as handle:
        for annotation in annotations:
            handle.write(f"{annotation.path}\n{len(annotation)}\n")
            if len(annotation) == 0:
                handle.write("0 0 0 0 0 0 0 0 0 0 \n")
            attributes = annotation.attributes if annotation.attributes is not None else \
                np.zeros((len(annotation), 6), dtype=np.int32)
            for box, attrs in zip(annotation.boxes, attributes):
                x1, y1, x2, y2 = box
                values = [_fmt(x1), _fmt(y1), _fmt(x2 - x1), _fmt(y2 - y1)] + [str(int(a)) for a in attrs]
                handle.write(" ".join(values) + " \n")


def _fmt(value: float) -> str:
    """Integers without a decimal point (the official files hold integer pixels)."""
    value = float(value)
    return str(int(round(value))) if abs(value - round(value)) < 1e-6 else f"{value:.2f}"
