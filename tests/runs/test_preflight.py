"""The pre-flight: on a WIDER FACE-shaped tree it names what would stop the study (a missing
validation image, runs the missing shared weights would drop, an old driver), and its trial
trains the plan's jobs briefly in a scratch folder and prints images/s and the plan's ETA."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from ffcore.cli import main

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))   # run_all.py is a script beside the package


@pytest.fixture(scope="module")
def wider_tree(tmp_path_factory) -> Path:
    """A tiny tree in the real WIDER FACE layout: WIDER_train/images with train/label.txt and
    wider_face_split/, WIDER_val/images, ground_truth/wider_face_val.mat and the three setting .mat files."""
    from ffcore.data.synth import TINY_SYNTH, ensure_synthetic_dataset

    root = tmp_path_factory.mktemp("wider") / "widerface"
    ensure_synthetic_dataset(root, TINY_SYNTH)
    for piece in ("WIDER_train/images", "train/label.txt", "wider_face_split/wider_face_val_bbx_gt.txt",
                  "WIDER_val/images", "ground_truth/wider_face_val.mat", "ground_truth/wider_hard_val.mat"):
        assert (root / piece).exists(), piece
    return root


@pytest.fixture()
def results(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FFCORE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("FFCORE_FIGURES", str(tmp_path / "figures"))
    return tmp_path / "results"


def test_a_deleted_validation_image_fails_the_preflight_and_is_named(wider_tree, tmp_path, results, capsys):
    tree = tmp_path / "widerface"
    shutil.copytree(wider_tree, tree)
    victim = sorted((tree / "WIDER_val" / "images").rglob("*.jpg"))[1]
    victim.unlink()
    code = main(["study", "preflight", "--profile", "full", "--data", str(tree), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code != 0
    assert str(victim) in out and "[ERROR  ] validation images" in out
    assert "[ok     ] training images: all" in out          # the other checks still ran and passed


def test_an_undecodable_training_image_is_named(wider_tree, tmp_path, results, capsys):
    tree = tmp_path / "widerface"
    shutil.copytree(wider_tree, tree)
    victim = sorted((tree / "WIDER_train" / "images").rglob("*.jpg"))[0]
    victim.write_bytes(b"not a jpeg")
    assert main(["study", "preflight", "--profile", "full", "--data", str(tree), "--device", "cpu"]) != 0
    out = capsys.readouterr().out
    assert "[ERROR  ] training images" in out and victim.name in out


def test_missing_shared_weights_name_the_runs_they_would_drop(wider_tree, tmp_path, results, monkeypatch, capsys):
    monkeypatch.setenv("FFCORE_SHARED", str(tmp_path / "no_shared"))
    assert main(["study", "preflight", "--profile", "full", "--data", str(wider_tree), "--device", "cpu"]) != 0
    out = capsys.readouterr().out
    for run in ("featherface_v2_distilled_eca_cbam_widerface", "retinaface_mnet025_widerface",
                "featherface_eca_cbam_widerface"):
        assert f"run {run} would be dropped from the study" in out
    assert "[ERROR  ] ImageNet backbone" in out and "featherface_v1" in out
    # the plan says so too, instead of leaving them out silently
    assert main(["study", "plan", "--profile", "full", "--data", str(wider_tree)]) == 0
    assert "left out: featherface_v2_distilled_eca_cbam_widerface: teacher weights" in capsys.readouterr().out


def test_study_train_refuses_a_broken_widerface_tree_before_training(wider_tree, tmp_path, results, capsys):
    tree = tmp_path / "widerface"
    shutil.copytree(wider_tree, tree)
    victim = sorted((tree / "WIDER_val" / "images").rglob("*.jpg"))[-1]
    victim.unlink()            # the folders are all there: only the pre-flight sees it
    code = main(["study", "train", "--profile", "full", "--data", str(tree), "--device", "cpu", "featherface_v2"])
    assert code == 2
    assert str(victim) in capsys.readouterr().err
    assert not (results / "full" / "checkpoints").exists()


def test_an_old_driver_is_named_with_what_to_install(monkeypatch):
    from ffcore.runs import preflight

    advice = preflight.describe_cuda_mismatch("13.0", "535.183.01")
    assert "needs NVIDIA driver >= 580" in advice and "535.183.01" in advice and "--index-url" in advice
    assert "no NVIDIA driver" in preflight.describe_cuda_mismatch("13.0", None)
    assert preflight.validations_of(350, 10) == 35 and preflight.validations_of(20, 10) == 2
    assert preflight.validations_of(25, 10) == 3 and preflight.validations_of(5, 0) == 0


def test_the_trial_trains_in_a_scratch_folder_and_prints_images_per_second_and_an_eta(wider_tree, results, capsys):
    code = main(["study", "preflight", "--profile", "full", "--data", str(wider_tree), "--device", "cpu",
                 "--image-size", "64", "--override", "batch_size=2", "--override", "workers=0", "--steps", "2",
                 "--val-images", "2", "featherface_v2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "featherface_v2: 2 x 2 steps" in out
    line = next(line for line in out.splitlines() if line.strip().startswith("featherface_v2 "))
    assert float(line.split()[1]) > 0                                   # measured images/s
    assert "ETA of the plan (1 runs, 400 epochs)" in out and "validation" in out
    assert (results / "preflight" / "full" / "checkpoints" / "featherface_v2" / "metrics.csv").is_file()
    assert not (results / "full").exists()                                # the real results are untouched


def test_run_all_refuses_a_tree_with_a_missing_validation_image_before_any_training(wider_tree, tmp_path, results,
                                                                                       capsys):
    import run_all  # noqa: E402

    tree = tmp_path / "widerface"
    shutil.copytree(wider_tree, tree)
    victim = sorted((tree / "WIDER_val" / "images").rglob("*.jpg"))[0]
    victim.unlink()
    assert run_all.main(["--profile", "full", "--data", str(tree), "--device", "cpu", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert str(victim) in err and "run_all.py: the pre-flight found" in err


def test_without_a_usable_gpu_the_default_profile_notice_says_why(wider_tree, monkeypatch):
    import torch

    from ffcore.cli.study import default_profile
    from ffcore.runs import preflight

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(preflight, "nvidia_driver_version", lambda: "535.104.05")
    profile, why = default_profile(wider_tree)
    assert profile == "synthetic"
    assert "NOT the full study" in why and "needs NVIDIA driver >= 580" in why and "535.104.05" in why


def test_on_a_node_without_gpu_the_device_check_fails_unless_left_out_for_a_submission(wider_tree, results,
                                                                                        capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a usable GPU")
    assert main(["study", "preflight", "--profile", "full", "--data", str(wider_tree)]) != 0
    out = capsys.readouterr().out
    assert "[ERROR  ] device: torch" in out and "CUDA" in out
    assert main(["study", "preflight", "--profile", "full", "--data", str(wider_tree), "--no-device"]) == 0
    assert "device" not in capsys.readouterr().out


def test_the_trial_refuses_a_scratch_folder_that_is_the_studys_own_results(wider_tree, results):
    from ffcore.runs.context import open_study
    from ffcore.runs.preflight import trial_run

    study = open_study("full", data_root=wider_tree, device="cpu", prepare_data=False)
    (results / "full").mkdir(parents=True)
    with pytest.raises(ValueError, match="must never touch"):
        trial_run(study, results, steps=1)
    assert (results / "full").is_dir()
