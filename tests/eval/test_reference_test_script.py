"""`ffcore predict` writes what Pytorch_Retinaface's `test_widerface.py` writes.

The oracle is the line-by-line transcription of that script's steps in
`tests/reference_test_pipeline.py`, and its file format below (int() of the corners,
w = int(x2) - int(x1)). Both run the same trained
RetinaFace-MobileNet-0.25 on the shared real photos.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ffcore.cli import main
from ffcore.eval.inference import (DETECTION_CAPS, PYTORCH_RETINAFACE_SCALE, parse_scale, postprocess_with_caps,
                                   resize_factor, scale_label)
from ffcore.paths import shared_dir
from reference_test_pipeline import reference_detections, reference_nms, reference_resize

WEIGHTS = shared_dir() / "weights" / "retinaface_mnet025_widerface.pth"
PHOTOS = ("crowd.jpg", "group.jpg")
needs_weights = pytest.mark.skipif(
    not WEIGHTS.is_file() or not all((shared_dir() / "images" / p).is_file() for p in PHOTOS),
    reason="shared weights or photos absent")


# ----------------------------------------------------------------------- the oracle

def _reference_file(model: torch.nn.Module, image_path, origin_size: bool) -> str:
    """The prediction file the script writes: int() of the corners, w = int(x2) - int(x1)."""
    dets = reference_detections(model, image_path, origin_size)
    lines = [image_path.stem, str(len(dets))]
    for box in dets:
        x, y = int(box[0]), int(box[1])
        w, h = int(box[2]) - int(box[0]), int(box[3]) - int(box[1])
        lines.append(f"{x} {y} {w} {h} {box[4]}")
    return "\n".join(lines) + "\n"


def _parsed(text: str) -> tuple[list[str], list[tuple[int, int, int, int]], np.ndarray]:
    """Header lines, integer boxes and float32 scores of a prediction file: the reference writes
    str(np.float32) and a trailing space, ffcore 9 significant digits; both read back to the same float32."""
    lines = text.splitlines()
    rows = [line.split() for line in lines[2:]]
    return lines[:2], [tuple(int(v) for v in row[:4]) for row in rows], np.array([row[4] for row in rows], np.float32)


# ------------------------------------------------------------------------------ tests

def test_pytorch_retinaface_scale_by_hand():
    assert parse_scale(PYTORCH_RETINAFACE_SCALE) == "short1600max2150" == scale_label("short1600max2150")
    # 886 x 1280: the short side to 1600 would make the long side 2312 > 2150, so the long side is 2150
    assert resize_factor(886, 1280, PYTORCH_RETINAFACE_SCALE) == pytest.approx(2150 / 1280)
    # 1200 x 1500: short side 1600 keeps the long side at 2000 <= 2150
    assert resize_factor(1200, 1500, PYTORCH_RETINAFACE_SCALE) == pytest.approx(1600 / 1200)
    for height, width in ((886, 1280), (624, 1024), (1200, 1500), (1600, 1600), (500, 2000)):
        assert resize_factor(height, width, PYTORCH_RETINAFACE_SCALE) == reference_resize(height, width, False)
    with pytest.raises(ValueError, match="short side"):
        parse_scale("short2000max1000")


def test_caps_default_to_none_and_the_fork_caps_are_a_named_option():
    assert DETECTION_CAPS == {"none": (None, None), "fork": (5000, 750)}
    from ffcore.eval.inference import DEFAULT_TEST_TIME

    assert (DEFAULT_TEST_TIME.postprocess.pre_nms_top_k, DEFAULT_TEST_TIME.postprocess.keep_top_k) == (None, None)
    fork = postprocess_with_caps("fork")
    assert (fork.pre_nms_top_k, fork.keep_top_k, fork.nms_iou, fork.score_threshold) == (5000, 750, 0.4, 0.02)
    with pytest.raises(ValueError, match="unknown detection caps"):
        postprocess_with_caps("tight")


@pytest.fixture(scope="module")
def photo_tree(tmp_path_factory):
    """A WIDER-format validation tree holding the two shared photos."""
    root = tmp_path_factory.mktemp("photos_widerface")
    event = root / "WIDER_val" / "images" / "0--Parade"
    event.mkdir(parents=True)
    listing = []
    for photo in PHOTOS:
        (event / photo).write_bytes((shared_dir() / "images" / photo).read_bytes())
        listing += [f"0--Parade/{photo}", "1", "10 10 20 20 0 0 0 0 0 0"]
    split = root / "wider_face_split"
    split.mkdir()
    (split / "wider_face_val_bbx_gt.txt").write_text("\n".join(listing) + "\n")
    return root


@needs_weights
@pytest.mark.parametrize("scale, origin_size", [("origin", True), (PYTORCH_RETINAFACE_SCALE, False)])
def test_predict_writes_what_test_widerface_writes(photo_tree, tmp_path, scale, origin_size):
    from ffcore.eval.detect import load_detector

    torch.set_num_threads(2)
    out = tmp_path / "pred"
    assert main(["predict", "--model", "retinaface_mnet025", "--weights", str(WEIGHTS), "--data", str(photo_tree),
                 "--out", str(out), "--scale", scale]) == 0
    meta = json.loads((out / "predictions_meta.json").read_text())
    assert meta["scale"] == scale and meta["detection_caps"] == "none"
    assert meta["postprocess"]["pre_nms_top_k"] is None and meta["postprocess"]["keep_top_k"] is None
    model = load_detector("retinaface_mnet025", WEIGHTS)
    for photo in PHOTOS:
        ours = _parsed((out / "0--Parade" / photo.replace(".jpg", ".txt")).read_text())
        reference = _parsed(_reference_file(model, photo_tree / "WIDER_val" / "images" / "0--Parade" / photo,
                                            origin_size))
        assert ours[0] == reference[0]                  # image name and box count
        assert int(reference[0][1]) > 10                # many low-score boxes: a real comparison
        assert ours[1] == reference[1]
        assert np.array_equal(ours[2], reference[2])


@needs_weights
def test_fork_caps_are_applied_and_recorded(photo_tree, tmp_path):
    torch.set_num_threads(2)
    plain, capped = tmp_path / "plain", tmp_path / "capped"
    for out, caps in ((plain, "none"), (capped, "fork")):
        assert main(["predict", "--model", "retinaface_mnet025", "--weights", str(WEIGHTS), "--data",
                     str(photo_tree), "--out", str(out), "--scale", "vga", "--caps", caps]) == 0
    meta = json.loads((capped / "predictions_meta.json").read_text())
    assert meta["detection_caps"] == "fork" and meta["postprocess"]["keep_top_k"] == 750
    for photo in PHOTOS:
        name = photo.replace(".jpg", ".txt")
        count_plain = int((plain / "0--Parade" / name).read_text().splitlines()[1])
        count_capped = int((capped / "0--Parade" / name).read_text().splitlines()[1])
        assert count_capped == min(count_plain, 750)


@pytest.mark.parametrize("seed", range(5))
def test_the_one_nms_keeps_what_py_cpu_nms_keeps(seed):
    # The single pass (`postprocess`) and the merge of flipped / rescaled passes
    # (`merge_detections`) both go through `nms_plus_one_pixel`.
    from ffcore.eval.inference import merge_detections
    from ffcore.postprocess import PostprocessConfig, Detections, nms_plus_one_pixel

    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 60, (200, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(1, 25, (200, 2))], axis=1)   # small boxes: the +1 matters
    scores = rng.permutation(200).astype(np.float64) / 200 + 0.001                   # distinct, no ties
    expected = reference_nms(np.concatenate([boxes, scores[:, None]], axis=1), 0.4)
    keep = nms_plus_one_pixel(torch.from_numpy(boxes), torch.from_numpy(scores), 0.4)
    assert keep.tolist() == [int(i) for i in expected]
    assert nms_plus_one_pixel(torch.from_numpy(boxes), torch.from_numpy(scores), 0.4, keep_top_k=3).tolist() == \
        [int(i) for i in expected[:3]]
    halves = [Detections(torch.from_numpy(boxes[s]).float(), torch.from_numpy(scores[s]).float(), torch.zeros(100, 10))
              for s in (slice(0, 100), slice(100, 200))]
    merged = merge_detections(halves, PostprocessConfig(nms_iou=0.4, keep_top_k=None))
    torch.testing.assert_close(merged.boxes, torch.from_numpy(boxes[expected]).float())
