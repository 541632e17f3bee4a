"""Untrusted input: checkpoints that would run code, every original layout still loading,
unreadable training images, unknown model names.

A checkpoint is a pickle, and a pickle can ask for any Python callable to be run while it
is read. The crafted files here ask for `open(<marker>, "w")`: if any command unpickled
them the unsafe way, the marker file would appear.
"""

from __future__ import annotations

import builtins
import csv
import io
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ffcore.checkpoint import (CheckpointError, UnsafeCheckpointError, file_sha256, load_checkpoint_file,
                               save_checkpoint)
from ffcore.paths import shared_dir
from support import tiny_config, write_tiny_wider_tree

SHARED = shared_dir()
WEIGHTS = SHARED / "weights"
needs_shared_weights = pytest.mark.skipif(not (WEIGHTS / "retinaface_mnet025_widerface.pth").is_file(),
                                          reason="shared weights not available")


class CreatesFile:
    """Unpickling this object runs open(marker, "w")."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


def crafted_checkpoint(path: Path, marker: Path, layout: str = "zip") -> Path:
    """A checkpoint with real weights beside an object whose unpickling creates `marker`."""
    payload = {"state_dict": {"body.stage1.0.0.weight": torch.zeros(8, 3, 3, 3)}, "note": CreatesFile(marker)}
    if layout == "zip":
        torch.save(payload, path)
    elif layout == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    elif layout == "plain_pickle":
        path.write_bytes(pickle.dumps(payload))
    elif layout == "numpy_object_array":       # the one numpy kind allowed is uint32; an object array is not
        array = np.empty(2, dtype=object)
        array[0] = CreatesFile(marker)
        torch.save({"rng_state": {"numpy": ("MT19937", array, 0, 0, 0.0)}}, path)
    else:
        raise ValueError(layout)
    assert not marker.exists()
    return path


@pytest.fixture()
def evil(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "created_by_the_checkpoint"
    return crafted_checkpoint(tmp_path / "evil.pth", marker), marker


def test_the_crafted_file_really_runs_code_when_unpickled_unsafely(evil):
    path, marker = evil
    torch.load(path, weights_only=False)          # what ffcore did before: the premise of every test below
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")     # torch's note on the plain pickle
@pytest.mark.parametrize("layout", ["zip", "legacy", "plain_pickle", "numpy_object_array"])
def test_the_loader_refuses_a_crafted_file_naming_it_and_runs_nothing(tmp_path, layout):
    marker = tmp_path / "marker"
    path = crafted_checkpoint(tmp_path / f"{layout}.pth", marker, layout)
    with pytest.raises(UnsafeCheckpointError) as error:
        load_checkpoint_file(path)
    assert not marker.exists()
    message = str(error.value)
    assert str(path) in message and "nothing from the file was run" in message
    assert "weights_only=False" not in message           # no advice to load it the unsafe way
    if layout == "zip":
        assert error.value.names == ("io.open",) and "io.open" in message


def _tiny_tree(tmp_path: Path) -> Path:
    return write_tiny_wider_tree(tmp_path / "data", images=4, size=64)


def _train_resume_argv(tmp_path, path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(path.read_bytes())
    return ["train", "--preset", "smoke", "--data", str(_tiny_tree(tmp_path)), "--out", str(out), "--resume"]


# Every command that reads a checkpoint, with the crafted file where the checkpoint goes.
COMMANDS = {
    "detect": lambda tmp, path: ["detect", "--model", "retinaface_mnet025", "--weights", str(path),
                                 "--image", str(SHARED / "images" / "group.jpg")],
    "predict": lambda tmp, path: ["predict", "--model", "retinaface_mnet025", "--weights", str(path),
                                  "--data", str(tmp / "nowhere"), "--out", str(tmp / "pred")],
    "export": lambda tmp, path: ["export", "--model", "retinaface_mnet025", "--weights", str(path),
                                 "--out", str(tmp / "model.onnx")],
    "prune": lambda tmp, path: ["prune", "--model", "retinaface_mnet025", "--weights", str(path), "--no-flops"],
    "bench": lambda tmp, path: ["bench", "--models", "retinaface_mnet025", "--weights",
                                f"retinaface_mnet025={path}", "--preset", "smoke", "--out", str(tmp / "b.csv")],
    "distill --teacher-weights": lambda tmp, path: ["distill", "--teacher", "retinaface_mnet025",
                                                    "--teacher-weights", str(path), "--out", str(tmp / "kd"),
                                                    "--data", str(tmp / "nowhere"), "--device", "cpu"],
    "train --resume": _train_resume_argv,
    "train --pretrained-backbone": lambda tmp, path: ["train", "--preset", "smoke", "--model", "retinaface_mnet025",
                                                      "--data", str(_tiny_tree(tmp)), "--out", str(tmp / "run"),
                                                      "--pretrained-backbone", str(path), "--device", "cpu"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_taking_a_checkpoint_refuses_the_crafted_file(command, evil, tmp_path, capsys):
    from ffcore.cli import main

    path, marker = evil
    code = main(COMMANDS[command](tmp_path, path))
    shown = capsys.readouterr()
    message = shown.out + shown.err
    assert not marker.exists(), f"`ffcore {command}` ran code from the checkpoint"
    assert code == 2 and "Traceback" not in message
    given = "last.pt" if command == "train --resume" else path.name     # --resume reads <out>/last.pt
    assert "refused to load" in message and given in message


# ------------------------------------------------------------------ every real layout still loads

@needs_shared_weights
@pytest.mark.parametrize("model, file, layout", [
    ("retinaface_mnet025", "retinaface_mnet025_widerface.pth", "Pytorch_Retinaface"),
    ("featherface_eca_cbam", "featherface_eca_cbam_widerface.pth", None),
])
def test_shared_trained_weights_load_with_the_safe_loader(model, file, layout):
    from ffcore.models import load_pretrained

    loaded = load_pretrained(model, WEIGHTS / file)
    assert layout is None or loaded.weights_layout == layout


@needs_shared_weights
def test_the_imagenet_tar_initialises_the_backbone():
    from ffcore.models import create_model
    from ffcore.models.loading import load_imagenet_backbone

    model = create_model("retinaface_mnet025")
    load_imagenet_backbone(model, WEIGHTS / "mobilenetV1X0.25_pretrain.tar")
    source = load_checkpoint_file(WEIGHTS / "mobilenetV1X0.25_pretrain.tar")["state_dict"]
    assert torch.equal(model.backbone.stage1[0].conv.weight, source["module.stage1.0.0.weight"])


def test_featherface_v1_original_layout_loads_from_a_file(tmp_path):
    from ffcore.models import load_pretrained

    vectors = torch.load(SHARED / "reference" / "featherface_v1_vectors.pt", weights_only=True)
    path = tmp_path / "featherface_v1_original.pth"
    torch.save(vectors["state_dict"], path)
    assert load_pretrained("featherface_v1", path).weights_layout == "FeatherFace"


# ------------------------------------------------------------------------ ffcore's own checkpoints

def test_save_checkpoint_refuses_what_the_safe_loader_would_refuse(tmp_path):
    target = tmp_path / "ckpt.pt"
    with pytest.raises(CheckpointError, match="pathlib"):
        save_checkpoint(target, {"model_name": "x", "state_dict": {}, "where": tmp_path})
    assert not target.exists() and not list(tmp_path.iterdir())      # neither the file nor a temporary


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    return write_tiny_wider_tree(tmp_path_factory.mktemp("untrusted_tiny"))


def test_training_checkpoints_need_nothing_beyond_the_safe_loader(tiny_root, tmp_path):
    from ffcore.checkpoint import unsafe_globals
    from ffcore.engine.supervised import train

    result = train(tiny_config(tiny_root, tmp_path / "run", epochs=1))
    assert unsafe_globals(result.last_checkpoint) == []
    state = load_checkpoint_file(result.last_checkpoint)["rng_state"]
    assert isinstance(state["numpy"]["state"]["key"], torch.Tensor)


def test_a_version1_checkpoint_with_a_numpy_rng_array_still_resumes(tiny_root, tmp_path):
    """Checkpoints written before RNG states were stored as tensors resume to the same weights."""
    from ffcore.engine.supervised import train

    config = tiny_config(tiny_root, tmp_path / "straight")
    train(config)
    interrupted = replace(config, out_dir=str(tmp_path / "resumed"))
    train(replace(interrupted, stop_after_epoch=1))
    last = tmp_path / "resumed" / "last.pt"
    payload = load_checkpoint_file(last)
    state = payload["rng_state"]["numpy"]
    legacy = ("MT19937", state["state"]["key"].numpy().astype(np.uint32), state["state"]["pos"],
              state["has_gauss"], state["gauss"])
    payload = {**payload, "format_version": 1, "rng_state": {**payload["rng_state"], "numpy": legacy}}
    torch.save(payload, last)                    # as version 1 wrote it (save_checkpoint would refuse it now)
    assert load_checkpoint_file(last)["rng_state"]["numpy"][1].dtype == np.uint32
    train(interrupted, resume=True)
    a = load_checkpoint_file(tmp_path / "straight" / "last.pt")["state_dict"]
    b = load_checkpoint_file(last)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("damage", ["empty", "truncated", "text"])
def test_a_damaged_checkpoint_is_named(tmp_path, damage):
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(100)}, buffer)
    data = {"empty": b"", "truncated": buffer.getvalue()[:300], "text": b"not a checkpoint\n"}[damage]
    path = tmp_path / "damaged.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint_file(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("zip_format", [True, False])
def test_randomly_damaged_checkpoints_load_or_raise_a_checkpoint_error(tmp_path, zip_format):
    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.arange(64.0)}, "epoch": 3, "note": "x"}, buffer,
               _use_new_zipfile_serialization=zip_format)
    original, path = buffer.getvalue(), tmp_path / "damaged.pt"
    rng = np.random.default_rng(11)
    for i in range(150):
        data = bytearray(original[: int(rng.integers(0, len(original)))] if i % 4 == 0 else original)
        for _ in range(int(rng.integers(1, 8)) if i % 4 else 0):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        path.write_bytes(bytes(data))
        try:
            load_checkpoint_file(path)
        except CheckpointError as error:
            assert str(path) in str(error)


# ----------------------------------------------------------------- unreadable images in training

def _corrupt(image: Path) -> None:
    image.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())


def _tree_with_interrupted_run(root: Path, out: Path, **overrides):
    from ffcore.engine.supervised import train

    config = tiny_config(write_tiny_wider_tree(root), out, max_steps_per_epoch=None, **overrides)
    assert train(replace(config, stop_after_epoch=1)).ok
    return config


def test_a_corrupt_image_stops_training_naming_it_and_keeps_the_last_good_checkpoint(tmp_path):
    from ffcore.data.datasets import UnreadableImageError
    from ffcore.engine.supervised import train

    out = tmp_path / "run"
    config = _tree_with_interrupted_run(tmp_path / "data", out, workers=2)   # records cross worker processes
    kept = file_sha256(out / "last.pt")
    bad = tmp_path / "data" / "train" / "images" / "0--Tiny" / "5.jpg"
    _corrupt(bad)
    result = train(config, resume=True)
    assert result.status == "unreadable_image" and not result.ok
    assert str(bad) in result.message and "label.txt:" in result.message
    assert "last good checkpoint" in result.message and "--skip-unreadable-images" in result.message
    assert file_sha256(out / "last.pt") == kept
    assert str(bad) in (out / "train.log").read_text()
    with pytest.raises(UnreadableImageError, match="5.jpg"):
        result.raise_for_status()


def test_unreadable_images_are_skipped_and_counted_when_asked(tmp_path):
    from ffcore.engine.supervised import train

    out = tmp_path / "run"
    config = _tree_with_interrupted_run(tmp_path / "data", out, skip_unreadable_images=True)
    images = tmp_path / "data" / "train" / "images" / "0--Tiny"
    _corrupt(images / "5.jpg")
    (images / "7.jpg").unlink()
    result = train(config, resume=True)
    assert result.ok and result.epochs_completed == 2
    assert result.skipped_images == 2 and result.history[-1]["skipped_images"] == 2
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["skipped_images"]) for r in rows] == [0, 2]
    log = (out / "train.log").read_text()
    assert "5.jpg" in log and "7.jpg" in log and "skipped unreadable training image" in log


def test_a_missing_image_is_named_by_the_dataset_with_its_annotation_line(tmp_path):
    from ffcore.data.datasets import RetinaFaceLabelDataset, UnreadableImageError

    root = write_tiny_wider_tree(tmp_path, images=3, size=48)
    dataset = RetinaFaceLabelDataset(root / "train" / "label.txt", check_images=False)
    (root / "train" / "images" / "0--Tiny" / "1.jpg").unlink()
    with pytest.raises(UnreadableImageError, match=r"1\.jpg \(listed at .*label\.txt:\d+\): image not found"):
        dataset[1]
    dataset.report_unreadable = True
    record = dataset[1]
    assert record.path.endswith("1.jpg") and record.listed_at.endswith(f"label.txt:{record.listed_at.split(':')[-1]}")


# --------------------------------------------------------------------------- unknown model names

def test_detect_with_an_unknown_model_lists_the_registered_ones(capsys):
    from ffcore.cli import main
    from ffcore.models import list_models

    with pytest.raises(SystemExit) as exit_:
        main(["detect", "--model", "featherface_v9", "--image", str(SHARED / "images" / "group.jpg")])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "unknown model 'featherface_v9'" in error and "no weights given" not in error
    assert all(name in error for name in list_models())


def test_load_detector_names_an_unknown_model_before_asking_for_weights():
    from ffcore.eval.detect import load_detector
    from ffcore.models.registry import UnknownModelError

    with pytest.raises(UnknownModelError, match="registered models: .*retinaface_mnet025"):
        load_detector("featherface_v9")


# ------------------------------------------------------------------------------ result caches

def test_an_evaluation_result_round_trips_through_a_safe_state_file(tmp_path):
    from ffcore.checkpoint import load_state_file, save_state_file
    from ffcore.data.matfiles import write_ground_truth
    from ffcore.eval import Predictions, evaluate, load_ground_truth
    from ffcore.eval.protocol import EvalResult, PredictionMatches, SettingResult

    boxes = [np.array([[10, 20, 30, 40], [50, 5, 8, 9]]), np.array([[4, 4, 20, 20]])]
    write_ground_truth(tmp_path / "gt", [("0--Parade", [("a", boxes[0], {}), ("b", boxes[1], {})])],
                       {s: [[np.array([0, 1]), np.array([0])]] for s in ("easy", "medium", "hard")})
    truth = load_ground_truth(tmp_path / "gt")
    predictions = Predictions.from_mapping({("0--Parade", "a"): [[10, 20, 30, 40, 0.9], [0, 0, 5, 5, 0.4]],
                                            ("0--Parade", "b"): [[5, 4, 20, 20, 0.7]]}, truth)
    result = evaluate(predictions, truth)
    path = save_state_file(tmp_path / "cache" / "eval.pt", result)
    restored = load_state_file(path, (EvalResult, SettingResult, PredictionMatches))
    assert restored.ap == result.ap and restored.num_images == result.num_images
    for setting in result.settings:
        for name in ("precision", "recall", "thresholds", "proposals", "true_positives"):
            a, b = getattr(result[setting], name), getattr(restored[setting], name)
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
    assert np.array_equal(result.face_match_score, restored.face_match_score, equal_nan=True)
    with pytest.raises(CheckpointError, match="not among the types expected"):
        load_state_file(path, (EvalResult,))


def test_a_crafted_cache_file_is_refused(tmp_path):
    from ffcore.checkpoint import load_state_file

    marker = tmp_path / "marker"
    path = tmp_path / "eval.pt"
    torch.save({"format": "ffcore-state", "value": CreatesFile(marker)}, path)
    with pytest.raises(UnsafeCheckpointError):
        load_state_file(path)
    assert not marker.exists()
