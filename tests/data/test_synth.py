"""The synthetic WIDER-format dataset: real layouts, official .mat structure, determinism."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import scipy.io

from ffcore.data.annotations import read_retinaface_labels, read_wider_bbx_gt
from ffcore.data.layout import WiderFaceLayout
from ffcore.data.synth import MANIFEST, TINY_SYNTH, SynthConfig, ensure_synthetic_dataset, preview_grid
from ffcore.data.ground_truth import load_ground_truth
from ffcore.paths import shared_dir

REAL_GT = shared_dir() / "data" / "widerface_val_gt"
MAT_FILES = ("wider_face_val.mat", "wider_easy_val.mat", "wider_medium_val.mat", "wider_hard_val.mat")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return ensure_synthetic_dataset(tmp_path_factory.mktemp("synth") / "synthetic", TINY_SYNTH)


def test_writes_the_real_layouts(tiny_root):
    layout = WiderFaceLayout.find(tiny_root, need=("train", "train_landmarks", "val", "val_gt"))
    assert layout.retinaface_train_labels == tiny_root / "train" / "label.txt"
    assert layout.train_images == tiny_root / "WIDER_train" / "images"
    assert layout.ground_truth_dir == tiny_root / "ground_truth"
    index = layout.validation_index(check_images=True)          # every listed image exists
    assert len(index) == TINY_SYNTH.val_images
    dataset = layout.train_dataset()
    assert len(dataset) == TINY_SYNTH.train_images and dataset.dropped_boxes == 0
    manifest = json.loads((tiny_root / MANIFEST).read_text())
    assert manifest["fingerprint"] == TINY_SYNTH.fingerprint()
    assert manifest["statistics"]["train"]["images"] == TINY_SYNTH.train_images


def test_label_txt_and_bbx_gt_agree(tiny_root):
    labels, _ = read_retinaface_labels(tiny_root / "train" / "label.txt")
    boxes_only, _ = read_wider_bbx_gt(tiny_root / "wider_face_split" / "wider_face_train_bbx_gt.txt")
    assert [a.path for a in labels] == [a.path for a in boxes_only]
    assert sum(len(a) for a in labels) > 0
    for with_landmarks, plain in zip(labels, boxes_only):
        np.testing.assert_array_equal(with_landmarks.boxes, plain.boxes)
        points = with_landmarks.landmarks[with_landmarks.has_landmarks].reshape(-1, 5, 2)
        boxes = with_landmarks.boxes[with_landmarks.has_landmarks]
        # landmarks lie in (a margin around) their face box; eye 1 is left of eye 2 unless strongly rolled
        margin = 0.25 * (boxes[:, 2:] - boxes[:, :2])[:, None, :]
        assert (points >= boxes[:, None, :2] - margin).all() and (points <= boxes[:, None, 2:] + margin).all()
        assert np.mean(points[:, 0, 0] < points[:, 1, 0]) >= 0.8 if len(points) else True


def _leaf_kinds(value, prefix=()):
    """Every leaf of what loadmat returned, described by its nesting (cells) and its array kind."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        level = prefix + (("cell", value.ndim, value.shape[1] if value.ndim == 2 else None),)
        return set().union(*(_leaf_kinds(v, level) for v in value.reshape(-1))) if value.size else {level}
    if isinstance(value, np.ndarray):
        return {prefix + (("array", value.dtype.kind, value.ndim,
                           value.shape[1] if value.ndim == 2 and value.size else None),)}
    return {prefix + (type(value).__name__,)}


@pytest.mark.skipif(not (REAL_GT / "wider_face_val.mat").is_file(), reason="shared WIDER FACE ground truth absent")
@pytest.mark.parametrize("name", MAT_FILES)
def test_mat_files_have_the_official_structure(tiny_root, name):
    ours = scipy.io.loadmat(str(tiny_root / "ground_truth" / name))
    real = scipy.io.loadmat(str(REAL_GT / name))
    assert sorted(k for k in ours if not k.startswith("__")) == sorted(k for k in real if not k.startswith("__"))
    for key in (k for k in real if not k.startswith("__")):
        assert ours[key].shape[1] == real[key].shape[1] == 1, key
        # every kind of leaf we write (nesting, dtype kind, rank, columns) also occurs in the official file
        assert _leaf_kinds(ours[key]) <= _leaf_kinds(real[key]), key
    first = ours["face_bbx_list"][0, 0][0, 0]
    assert first.dtype == np.int32 and first.shape[1] == 4


def test_mat_files_load_with_the_evaluator_reader(tiny_root):
    truth = load_ground_truth(tiny_root / "ground_truth")
    annotations, _ = read_wider_bbx_gt(tiny_root / "wider_face_split" / "wider_face_val_bbx_gt.txt")
    assert truth.num_images == len(annotations) == TINY_SYNTH.val_images
    by_key = {(a.path.split("/")[0], a.path.split("/")[1][:-4]): a for a in annotations}
    for i in range(truth.num_images):
        boxes = by_key[truth.image_key(i)].boxes
        xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
        np.testing.assert_array_equal(truth.image_boxes(i), xywh)
    counts = truth.face_counts()
    assert 0 < counts["easy"] <= counts["medium"] <= counts["hard"] <= truth.num_faces
    # settings are nested: every easy face is a medium face, every medium face a hard face
    assert not (truth.kept["easy"] & ~truth.kept["medium"]).any()
    assert not (truth.kept["medium"] & ~truth.kept["hard"]).any()


def test_generation_is_deterministic_and_cached(tmp_path, tiny_root):
    config = dataclasses.replace(TINY_SYNTH, train_images=2, val_images=1)
    first = ensure_synthetic_dataset(tmp_path / "a", config)
    second = ensure_synthetic_dataset(tmp_path / "b", config)
    for relative in ("train/label.txt", "wider_face_split/wider_face_val_bbx_gt.txt"):
        assert (first / relative).read_text() == (second / relative).read_text()
    image = next((first / "WIDER_train" / "images").rglob("*.jpg")).relative_to(first)
    assert (first / image).read_bytes() == (second / image).read_bytes()

    stamp = (first / MANIFEST).stat().st_mtime_ns
    assert ensure_synthetic_dataset(first, config) == first                 # same config: nothing written
    assert (first / MANIFEST).stat().st_mtime_ns == stamp
    other = dataclasses.replace(config, seed=1)
    ensure_synthetic_dataset(first, other)                                    # another config: replaced
    assert json.loads((first / MANIFEST).read_text())["fingerprint"] == other.fingerprint()
    assert (first / "train/label.txt").read_text() != (second / "train/label.txt").read_text()


def test_refuses_to_overwrite_a_tree_it_did_not_write(tmp_path):
    (tmp_path / "WIDER_train" / "images").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not a synthetic dataset"):
        ensure_synthetic_dataset(tmp_path, TINY_SYNTH)
    assert (tmp_path / "WIDER_train" / "images").is_dir() and not (tmp_path / MANIFEST).exists()


def test_leaves_unrelated_entries_alone(tmp_path):
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "mine.txt").write_text("precious")
    config = dataclasses.replace(TINY_SYNTH, train_images=1, val_images=1)
    ensure_synthetic_dataset(tmp_path, config)
    ensure_synthetic_dataset(tmp_path, dataclasses.replace(config, seed=2))
    assert (tmp_path / "smoke" / "mine.txt").read_text() == "precious"
    assert not list(tmp_path.parent.glob(f".{tmp_path.name}.tmp-*"))          # no staging folder left behind


def test_config_validation():
    with pytest.raises(ValueError, match="min_long_side"):
        SynthConfig(min_long_side=700, max_long_side=640)


def test_preview_grid_and_cli(tiny_root, tmp_path, capsys):
    import matplotlib

    matplotlib.use("Agg")
    fig = preview_grid(tiny_root, n=4, columns=2)
    assert len([ax for ax in fig.axes if ax.images]) == 4
    from ffcore.cli import main

    out = tmp_path / "cli"
    assert main(["synth", "--out", str(out), "--train-images", "2", "--val-images", "1"]) == 0
    printed = capsys.readouterr().out
    assert "not WIDER FACE" in printed and "train: 2 images" in printed
    assert (out / "ground_truth" / "wider_hard_val.mat").is_file()


def test_a_held_out_test_split_is_its_own_evaluation_tree(tmp_path, tiny_root):
    from ffcore.data.layout import HELDOUT_TEST_DIR

    config = dataclasses.replace(TINY_SYNTH, test_images=3)
    root = ensure_synthetic_dataset(tmp_path / "with_test", config)
    layout = WiderFaceLayout.discover(root)
    assert layout.heldout_test == root / HELDOUT_TEST_DIR
    test = WiderFaceLayout.find(layout.heldout_test, need=("val", "val_gt"))
    ground_truth = load_ground_truth(test.ground_truth_dir)
    assert ground_truth.num_images == 3
    assert all("synthtest" in name for name in ground_truth.names)
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["statistics"]["test"]["images"] == 3
    # training and validation images are those of the same config without a test split
    assert (root / "train" / "label.txt").read_text() == (tiny_root / "train" / "label.txt").read_text()
    val = WiderFaceLayout.discover(tiny_root)
    assert load_ground_truth(layout.ground_truth_dir).names == load_ground_truth(val.ground_truth_dir).names
    assert val.heldout_test is None
    # no test split: the fingerprint of the datasets generated before the field existed
    assert TINY_SYNTH.fingerprint() != config.fingerprint()
    payload = {k: v for k, v in dataclasses.asdict(TINY_SYNTH).items() if k not in ("test_images", "test_seed")}
    import hashlib

    from ffcore.data.synth import GENERATOR_VERSION
    expected = hashlib.sha256(json.dumps({"config": payload, "generator": GENERATOR_VERSION},
                                         sort_keys=True).encode()).hexdigest()[:16]
    assert TINY_SYNTH.fingerprint() == expected
