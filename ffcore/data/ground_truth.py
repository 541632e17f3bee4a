"""The official WIDER FACE validation ground truth (`wider_face_val.mat` + `wider_{easy,medium,hard}_val.mat`).

Boxes of all images are kept in one concatenated array (`boxes`, with `offsets` per
image) so the evaluator can work on the whole dataset at once; `kept[setting]` is a
boolean mask over the same faces built from the settings' 1-based `gt_list`.

The files are checked as they are read, since a damaged or foreign file would otherwise
give a wrong AP without a word: every problem (an unreadable file, a missing variable,
a name that is not a plain string or would leave the prediction folder, boxes that are
not finite numbers, indices that are not whole numbers in range) raises `GroundTruthError`
naming the file and the event / image at fault.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SETTINGS = ("easy", "medium", "hard")
ALL_FACES_FILE = "wider_face_val.mat"
# Coordinates beyond this are no image's (JPEG and PNG sides stop at 65,535 pixels).
MAX_ABS_COORDINATE = 1e6


def setting_file(setting: str) -> str:
    """The ground-truth file of one setting (`wider_hard_val.mat`); `ALL_FACES_FILE` holds every face."""
    return f"wider_{setting}_val.mat"


class GroundTruthError(ValueError):
    """A ground-truth folder or .mat file that is missing or not in the official layout."""


@dataclass(frozen=True)
class GroundTruth:
    """All validation faces. Image i owns faces `offsets[i]:offsets[i+1]` of `boxes` (x, y, w, h)."""

    events: tuple[str, ...]            # event folder of each image ("0--Parade")
    names: tuple[str, ...]             # image name without extension ("0_Parade_marchingband_1_465")
    boxes: np.ndarray                  # [N, 4] float64 x, y, w, h in pixels
    offsets: np.ndarray                # [I + 1] int64
    kept: dict[str, np.ndarray]        # setting -> [N] bool, faces counted in that setting
    source: str = ""

    @property
    def num_images(self) -> int:
        return len(self.names)

    @property
    def num_faces(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def settings(self) -> tuple[str, ...]:
        return tuple(self.kept)

    def image_key(self, index: int) -> tuple[str, str]:
        return self.events[index], self.names[index]

    def image_boxes(self, index: int) -> np.ndarray:
        return self.boxes[self.offsets[index]:self.offsets[index + 1]]

    def image_index(self) -> dict[tuple[str, str], int]:
        """(event, name) -> image position."""
        return {key: i for i, key in enumerate(zip(self.events, self.names))}

    def face_counts(self) -> dict[str, int]:
        return {setting: int(mask.sum()) for setting, mask in self.kept.items()}

    def subset(self, image_indices) -> "GroundTruth":
        """A ground truth restricted to some images (tests, quick looks); settings follow."""
        image_indices = np.asarray(image_indices, dtype=np.int64)
        counts = np.diff(self.offsets)[image_indices]
        face_rows = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in image_indices]) \
            if len(image_indices) else np.zeros(0, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return GroundTruth(events=tuple(self.events[i] for i in image_indices),
                           names=tuple(self.names[i] for i in image_indices),
                           boxes=self.boxes[face_rows], offsets=offsets,
                           kept={s: m[face_rows] for s, m in self.kept.items()}, source=self.source)


def _loadmat(path: Path, variables: tuple[str, ...] | None = None) -> dict:
    import scipy.io
    from scipy.io.matlab import MatReadError

    if not path.is_file():
        raise GroundTruthError(
            f"ground-truth file missing: {path} (the folder needs {ALL_FACES_FILE} and "
            f"{', '.join(setting_file(s) for s in SETTINGS)} from the WIDER FACE eval_tools)")
    try:
        return scipy.io.loadmat(str(path), variable_names=variables)
    # what scipy raises for truncated, damaged or foreign files (found by fuzzing the official files),
    # NotImplementedError for MATLAB v7.3 (HDF5) files
    except (MatReadError, ValueError, TypeError, IndexError, KeyError, OSError, EOFError, OverflowError,
            MemoryError, NotImplementedError, zlib.error, struct.error) as exc:
        raise GroundTruthError(f"cannot read {path} as a MATLAB .mat file (truncated, damaged or not a .mat "
                               f"file): {type(exc).__name__}: {exc}") from exc


def _cell_string(cell, path: Path, where: str) -> str:
    """A MATLAB string inside a cell: scipy gives array(['name']) (possibly nested once more)."""
    value = cell
    while isinstance(value, np.ndarray):
        if value.size != 1:
            raise GroundTruthError(f"{path}: {where} should be one string, found an array of shape {value.shape}")
        value = value.reshape(-1)[0]
    if not isinstance(value, str):
        raise GroundTruthError(f"{path}: {where} should be a string, found {type(value).__name__} {value!r}")
    return value


def _path_component(name: str, path: Path, where: str) -> str:
    """Event and image names become folder and file names of prediction files: one plain component each."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\x00") or name != name.strip():
        raise GroundTruthError(f"{path}: {where} is {name!r}, not a plain file or folder name")
    return name


def _column(mat: dict, key: str, path: Path) -> np.ndarray:
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise GroundTruthError(f"{path} has no variable '{key}' (of those read, found: {found}); "
                               "is this an official WIDER FACE evaluation file?")
    return np.asarray(mat[key]).reshape(-1)


def _numeric(cell, path: Path, what: str) -> np.ndarray:
    array = np.asarray(cell)
    if array.dtype.kind not in "biuf":
        raise GroundTruthError(f"{path}: {what} should hold numbers, found {array.dtype} data")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise GroundTruthError(f"{path}: {what} holds NaN or infinite values")
    return array


def _face_array(cell, path: Path, where: str) -> np.ndarray:
    boxes = _numeric(cell, path, f"face_bbx_list of {where}")
    if boxes.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise GroundTruthError(f"{path}: face_bbx_list of {where} has shape {boxes.shape}, expected [n, 4]")
    if np.abs(boxes).max() > MAX_ABS_COORDINATE:
        raise GroundTruthError(f"{path}: face_bbx_list of {where} holds a coordinate beyond "
                               f"+-{MAX_ABS_COORDINATE:g} pixels, larger than any image")
    return boxes


def load_ground_truth(gt_dir: str | Path, settings: tuple[str, ...] = SETTINGS) -> GroundTruth:
    """Read the official evaluation .mat files from `gt_dir`."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise GroundTruthError(f"ground-truth folder not found: {gt_dir}")
    all_path = gt_dir / ALL_FACES_FILE
    mat = _loadmat(all_path, ("event_list", "file_list", "face_bbx_list"))
    event_cells = _column(mat, "event_list", all_path)
    file_cells = _column(mat, "file_list", all_path)
    box_cells = _column(mat, "face_bbx_list", all_path)
    if not (len(event_cells) == len(file_cells) == len(box_cells)):
        raise GroundTruthError(f"{all_path}: event_list, file_list and face_bbx_list have different lengths "
                               f"({len(event_cells)}, {len(file_cells)}, {len(box_cells)})")

    events, names, boxes, counts = [], [], [], []
    for e, event_cell in enumerate(event_cells):
        event = _path_component(_cell_string(event_cell, all_path, f"event_list[{e}]"), all_path,
                                f"event_list[{e}]")
        files = np.asarray(file_cells[e]).reshape(-1)
        faces = np.asarray(box_cells[e]).reshape(-1)
        if len(files) != len(faces):
            raise GroundTruthError(f"{all_path}: event {event} lists {len(files)} files but {len(faces)} box arrays")
        for i, (name_cell, face_cell) in enumerate(zip(files, faces)):
            where = f"file_list of event {event}, item {i}"
            name = _path_component(_cell_string(name_cell, all_path, where), all_path, where)
            image_boxes = _face_array(face_cell, all_path, f"{event}/{name}")
            events.append(event)
            names.append(name)
            boxes.append(image_boxes)
            counts.append(image_boxes.shape[0])
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    all_boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4), dtype=np.float64)
    events_in_order = [_cell_string(cell, all_path, f"event_list[{e}]") for e, cell in enumerate(event_cells)]

    kept = {}
    for setting in settings:
        path = gt_dir / setting_file(setting)
        setting_mat = _loadmat(path, ("event_list", "gt_list"))   # the rest repeats wider_face_val.mat
        gt_cells = _column(setting_mat, "gt_list", path)
        setting_events = _column(setting_mat, "event_list", path)
        if len(gt_cells) != len(event_cells) or len(setting_events) != len(event_cells) or any(
                _cell_string(a, path, f"event_list[{e}]") != events_in_order[e]
                for e, a in enumerate(setting_events)):
            raise GroundTruthError(f"{path}: its event_list does not match {all_path}")
        mask = np.zeros(all_boxes.shape[0], dtype=bool)
        image = 0
        for e, cell in enumerate(gt_cells):
            per_image = np.asarray(cell).reshape(-1)
            for keep_cell in per_image:
                if image >= len(names):
                    raise GroundTruthError(f"{path}: gt_list has more images than {all_path}")
                where = f"gt_list of {events[image]}/{names[image]}"
                values = _numeric(keep_cell, path, where).reshape(-1)
                if (values != np.round(values)).any():
                    raise GroundTruthError(f"{path}: {where} holds non-integer face indices")
                indices = values.astype(np.int64)
                n_faces = counts[image]
                if indices.size and (indices.min() < 1 or indices.max() > n_faces):
                    raise GroundTruthError(
                        f"{path}: gt_list of {events[image]}/{names[image]} holds index {indices.max()} "
                        f"outside 1..{n_faces} (indices are 1-based)")
                mask[offsets[image] + indices - 1] = True
                image += 1
        if image != len(names):
            raise GroundTruthError(f"{path}: gt_list covers {image} images, {all_path} has {len(names)}")
        kept[setting] = mask

    return GroundTruth(events=tuple(events), names=tuple(names), boxes=all_boxes, offsets=offsets,
                       kept=kept, source=str(gt_dir))
