"""The official WIDER FACE evaluation ground truth (.mat): a writer of files in its structure.

Structure of the official files (as `scipy.io.loadmat` returns them), E events:
- `event_list` (E, 1) cell of strings ("0--Parade");
- `file_list` (E, 1) cell, each an (n_e, 1) cell of image names without ".jpg";
- `face_bbx_list` (E, 1) cell, each an (n_e, 1) cell of int32 [k, 4] boxes `x y w h`;
- `{blur,expression,illumination,invalid,occlusion,pose}_label_list`: same nesting, uint8 [k, 1];
- in `wider_{easy,medium,hard}_val.mat` also `gt_list`: same nesting, [k', 1] 1-based
  indices (uint8, or uint16 when an index exceeds 255) of the faces counted in that setting.

The reader is `ffcore.data.ground_truth.load_ground_truth` (the evaluator's ground truth); this module
writes files that it (and MATLAB) read exactly like the official ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ffcore.data.ground_truth import SETTINGS

VAL_MAT = "wider_face_val.mat"
LABEL_KEYS = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")


def setting_mat_name(setting: str) -> str:
    return f"wider_{setting}_val.mat"


def _cell(items: list) -> np.ndarray:
    cell = np.empty((len(items), 1), dtype=object)
    for index, item in enumerate(items):
        cell[index, 0] = item
    return cell


def _index_array(indices: np.ndarray) -> np.ndarray:
    indices = np.asarray(indices, dtype=np.int64).reshape(-1, 1)
    dtype = np.uint8 if indices.size == 0 or indices.max() <= 255 else np.uint16
    return indices.astype(dtype)


def write_ground_truth(out_dir: str | Path, events: list[tuple[str, list[tuple[str, np.ndarray, dict]]]],
                       kept: dict[str, list[list[np.ndarray]]]) -> list[Path]:
    """Write `wider_face_val.mat` and `wider_{easy,medium,hard}_val.mat` in the official structure.

    `events`: [(event, [(image name without .jpg, int boxes [k, 4] x y w h, {label key: uint8 [k]})])].
    `kept[setting][event index][image index]`: 0-based indices of the faces counted in that setting.
    """
    from scipy.io import savemat

    for event, images in events:
        for name, boxes, _ in images:
            # int32 is the official type: a NaN or huge box would be cast to garbage, not refused
            values = np.asarray(boxes, dtype=np.float64)
            if not np.isfinite(values).all() or np.abs(values).max(initial=0) > np.iinfo(np.int32).max:
                raise ValueError(f"boxes of {event}/{name} must be finite and fit int32, got {values.tolist()}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = {
        "event_list": _cell([event for event, _ in events]),
        "file_list": _cell([_cell([name for name, _, _ in images]) for _, images in events]),
        "face_bbx_list": _cell([_cell([np.asarray(boxes, dtype=np.int32).reshape(-1, 4) for _, boxes, _ in images])
                                for _, images in events]),
    }
    for key in LABEL_KEYS:
        base[f"{key}_label_list"] = _cell([
            _cell([np.asarray(labels.get(key, np.zeros(len(boxes))), dtype=np.uint8).reshape(-1, 1)
                   for _, boxes, labels in images]) for _, images in events])
    written = [out_dir / VAL_MAT]
    savemat(str(written[0]), base, do_compression=True)
    for setting in SETTINGS:
        gt_list = _cell([_cell([_index_array(np.asarray(indices) + 1) for indices in per_event])
                         for per_event in kept[setting]])
        path = out_dir / setting_mat_name(setting)
        savemat(str(path), {**base, "gt_list": gt_list}, do_compression=True)
        written.append(path)
    return written
