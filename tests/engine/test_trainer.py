"""Trainer: presets, schedules, outputs of a run, exact resume, divergence handling, best.pt selection, CLI."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ffcore.checkpoint import CheckpointError, load_checkpoint_file
from ffcore.engine import TrainingDivergedError, get_preset, preset_names
from ffcore.engine.supervised import train
from ffcore.engine.config import TrainConfig
from ffcore.engine.schedules import build_optimizer, build_scheduler
from support import tiny_config, write_tiny_wider_tree


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    return write_tiny_wider_tree(tmp_path_factory.mktemp("tiny_wider"))


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    """The project's synthetic WIDER-format tree, tiny: training labels, validation images and .mat files."""
    from ffcore.data.synth import TINY_SYNTH, ensure_synthetic_dataset

    return ensure_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "tiny", TINY_SYNTH)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- presets, schedules

def test_paper_and_thesis_presets():
    paper = get_preset("featherface_paper")
    assert (paper.model, paper.optimizer, paper.lr, paper.weight_decay, paper.schedule) == \
        ("featherface_v1", "adamw", 1e-3, 0.01, "onecycle")
    assert (paper.epochs, paper.batch_size, paper.image_size) == (350, 32, 640)
    thesis = get_preset("v2_thesis")
    assert (thesis.model, thesis.optimizer, thesis.lr, thesis.weight_decay) == ("featherface_v2", "adamw", 1e-3, 5e-4)
    assert (thesis.schedule, thesis.warmup_epochs, thesis.min_lr, thesis.epochs) == ("warmup_cosine", 5, 1e-6, 400)
    assert thesis.mixup_prob == 0.5
    assert {"smoke", "synthetic_cpu"} <= set(preset_names())
    assert get_preset("v2_thesis", epochs=3).epochs == 3
    with pytest.raises(KeyError, match="presets"):
        get_preset("no_such_recipe")


def test_config_round_trips_through_a_dict():
    config = replace(get_preset("retinaface_paper"), model_overrides={"neck": "fpn"})
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="bogus"):
        TrainConfig.from_dict({**config.to_dict(), "bogus": 1})


def _lrs(config: TrainConfig, steps_per_epoch: int) -> list[float]:
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(2, 2))], config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    lrs = []
    for _ in range(config.epochs * steps_per_epoch):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_onecycle_is_stepped_per_iteration_and_peaks_at_lr():
    config = replace(get_preset("featherface_paper"), epochs=2)
    lrs = _lrs(config, steps_per_epoch=10)
    assert len(set(lrs[:10])) == 10                       # changes within the first epoch
    assert max(lrs) == pytest.approx(config.lr, rel=1e-3)
    assert lrs[-1] < config.lr / 1000


def test_warmup_then_cosine_to_min_lr():
    config = replace(get_preset("v2_thesis"), epochs=10, warmup_epochs=2)
    lrs = _lrs(config, steps_per_epoch=5)
    assert lrs[0] == pytest.approx(config.lr / 10)       # 1 / (2 epochs x 5 steps)
    assert lrs[9] == pytest.approx(config.lr)             # end of warm-up
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] == pytest.approx(config.min_lr + (config.lr - config.min_lr) * 0.5 *
                                    (1 + math.cos(math.pi * 39 / 40)))


# ----------------------------------------------------------------------------------------- runs

def test_smoke_run_writes_checkpoints_metrics_and_logs(tiny_root, tmp_path):
    result = train(tiny_config(tiny_root, tmp_path / "run"))
    assert result.ok and result.epochs_completed == 2
    for name in ("last.pt", "best.pt", "metrics.csv", "train.log"):
        assert (tmp_path / "run" / name).is_file(), name
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"lr", "loss", "loss_loc", "loss_cls", "loss_landm", "wall_time_s", "images_per_s"} <= set(rows[0])
    assert all(math.isfinite(float(r["loss"])) for r in rows)

    checkpoint = load_checkpoint_file(tmp_path / "run" / "last.pt")
    assert checkpoint["model_name"] == "retinaface_mnet025" and checkpoint["epoch"] == 2
    assert {"optimizer", "scheduler", "scaler", "metrics", "train_config", "git_commit", "rng_state"} <= set(checkpoint)
    assert TrainConfig.from_dict(checkpoint["train_config"]) == tiny_config(tiny_root, tmp_path / "run")

    best = load_checkpoint_file(tmp_path / "run" / "best.pt")
    best_epoch = min(result.history, key=lambda row: row["loss"])["epoch"]
    assert best["epoch"] == best_epoch and best["best_metric"] == {"name": "loss", "value": result.best_value}

    from ffcore.models import load_pretrained
    model = load_pretrained("retinaface_mnet025", tmp_path / "run" / "last.pt")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in result.model.state_dict().items())


def test_the_final_rule_keeps_the_last_epoch_without_validation(tiny_root, tmp_path):
    result = train(tiny_config(tiny_root, tmp_path / "run", epochs=3, best_metric="final", val_every=0))
    best, last = (load_checkpoint_file(tmp_path / "run" / name) for name in ("best.pt", "last.pt"))
    assert best["epoch"] == last["epoch"] == 3 and best["best_metric"] == {"name": "final", "value": 3}
    assert all(torch.equal(best["state_dict"][k], v) for k, v in last["state_dict"].items())
    assert result.best_value == 3


def test_resume_continues_exactly(tiny_root, tmp_path):
    config = tiny_config(tiny_root, tmp_path / "straight", mixup_prob=0.5)
    straight = train(config)
    interrupted = replace(config, out_dir=str(tmp_path / "resumed"))
    first = train(replace(interrupted, stop_after_epoch=1))
    assert first.epochs_completed == 1
    resumed = train(interrupted, resume=True)
    assert resumed.epochs_completed == 2 and len(resumed.history) == 2
    a = load_checkpoint_file(tmp_path / "straight" / "last.pt")["state_dict"]
    b = load_checkpoint_file(tmp_path / "resumed" / "last.pt")["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from an uninterrupted run"
    assert straight.history[-1]["loss"] == resumed.history[-1]["loss"]


def test_resume_on_the_cpu_from_a_checkpoint_written_with_four_gpus(tiny_root, tmp_path):
    """A run started on a 4-GPU machine resumes on a CPU-only one: the saved CUDA generator states
    that have no device here are left alone, and the weights match an uninterrupted run."""
    from ffcore.checkpoint import save_checkpoint

    config = tiny_config(tiny_root, tmp_path / "straight")
    train(config)
    interrupted = replace(config, out_dir=str(tmp_path / "resumed"))
    train(replace(interrupted, stop_after_epoch=1))
    last = tmp_path / "resumed" / "last.pt"
    payload = load_checkpoint_file(last)
    fake_state = torch.zeros(16, dtype=torch.uint8)   # the size of a CUDA Philox state
    payload["rng_state"]["cuda"] = [fake_state.clone() for _ in range(4)]
    save_checkpoint(last, payload)

    resumed = train(interrupted, resume=True)
    assert resumed.ok and resumed.epochs_completed == 2
    a = load_checkpoint_file(tmp_path / "straight" / "last.pt")["state_dict"]
    b = load_checkpoint_file(tmp_path / "resumed" / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("saved, visible, restored", [(4, 1, [0]), (1, 4, [0]), (4, 0, []), (2, 2, [0, 1])])
def test_cuda_generator_states_are_restored_per_device_that_both_sides_have(monkeypatch, saved, visible, restored):
    from ffcore.engine import trainer

    calls = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append((device, int(state[0]))))
    states = [torch.full((16,), index, dtype=torch.uint8) for index in range(saved)]
    assert trainer.restore_cuda_rng_states(states, visible=visible) == len(restored)
    assert calls == [(index, index) for index in restored]   # device i gets saved state i


def test_resume_refuses_a_different_recipe(tiny_root, tmp_path):
    config = tiny_config(tiny_root, tmp_path / "run", epochs=1)
    train(config)
    with pytest.raises(CheckpointError, match="lr"):
        train(replace(config, lr=0.5), resume=True)
    with pytest.raises(CheckpointError, match="does not exist"):
        train(replace(config, out_dir=str(tmp_path / "empty")), resume=True)


def test_non_finite_loss_stops_cleanly_and_keeps_the_last_good_checkpoint(tiny_root, tmp_path, monkeypatch):
    from ffcore.losses import MultiBoxLoss

    original = MultiBoxLoss.forward
    calls = {"n": 0}

    def poisoned(self, predictions, priors, targets, target_weights=None):
        terms = original(self, predictions, priors, targets, target_weights)
        calls["n"] += 1
        if calls["n"] > 2:                     # epoch 1 has two steps; epoch 2 blows up
            terms["cls"] = terms["cls"] * float("nan")
        return terms

    monkeypatch.setattr(MultiBoxLoss, "forward", poisoned)
    run = tmp_path / "run"
    result = train(tiny_config(tiny_root, run))
    assert result.status == "diverged" and not result.ok
    assert result.epochs_completed == 1
    assert "non-finite loss at epoch 2" in result.message and "last good checkpoint" in result.message
    assert load_checkpoint_file(run / "last.pt")["epoch"] == 1
    assert "non-finite loss" in (run / "train.log").read_text()
    assert len(list(csv.DictReader(open(run / "metrics.csv")))) == 1
    with pytest.raises(TrainingDivergedError, match="non-finite"):
        result.raise_for_status()


def test_best_checkpoint_follows_validation_ap(synthetic_root, tmp_path, monkeypatch):
    from ffcore.engine.trainer import Trainer

    aps = iter([{"easy": 0.2, "medium": 0.2, "hard": 0.5}, {"easy": 0.3, "medium": 0.3, "hard": 0.4},
                {"easy": 0.1, "medium": 0.1, "hard": 0.6}])
    monkeypatch.setattr(Trainer, "_validate", lambda self, model: next(aps))
    run = tmp_path / "run"
    result = train(tiny_config(synthetic_root, run, epochs=3, val_every=1, best_metric="hard",
                               max_steps_per_epoch=1))
    assert load_checkpoint_file(run / "best.pt")["epoch"] == 3
    assert result.final_ap == {"easy": 0.1, "medium": 0.1, "hard": 0.6}
    assert [r["ap_hard"] for r in result.history] == [0.5, 0.4, 0.6]
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [float(r["ap_hard"]) for r in rows] == [0.5, 0.4, 0.6]


def test_validation_runs_the_widerface_protocol(synthetic_root, tmp_path):
    result = train(tiny_config(synthetic_root, tmp_path / "run", epochs=1, val_every=1, val_scale=128,
                               best_metric="easy", max_steps_per_epoch=1))
    assert set(result.final_ap) == {"easy", "medium", "hard"}
    assert all(0.0 <= v <= 1.0 for v in result.final_ap.values())
    row = next(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert float(row["ap_easy"]) == pytest.approx(result.final_ap["easy"])
    assert (tmp_path / "run" / "best.pt").is_file()


def test_validation_settings_are_checked_before_training(tiny_root, tmp_path):
    with pytest.raises(ValueError, match="val_every"):
        train(tiny_config(tiny_root, tmp_path / "run", best_metric="hard", val_every=0))
    from ffcore.data.layout import LayoutError
    with pytest.raises(LayoutError, match="WIDER_val"):     # tiny_root has no validation tree
        train(tiny_config(tiny_root, tmp_path / "run", best_metric="hard", val_every=1))
    assert not (tmp_path / "run" / "last.pt").exists()


def test_cli_train_and_resume(tiny_root, tmp_path):
    from ffcore.cli import main

    out = tmp_path / "cli"
    args = ["train", "--preset", "smoke", "--data", str(tiny_root), "--out", str(out), "--image-size", "64",
            "--max-steps-per-epoch", "1", "--epochs", "1"]
    assert main(args) == 0
    assert load_checkpoint_file(out / "last.pt")["epoch"] == 1
    # --resume takes the saved recipe: nothing left to do, the run stays at epoch 1
    assert main(["train", "--out", str(out), "--resume"]) == 0
    assert load_checkpoint_file(out / "last.pt")["epoch"] == 1


def test_run_log_appends_every_line_flushed_whatever_the_logger_level(tmp_path, caplog):
    import logging

    from ffcore.engine.run_log import RunLogger

    caplog.set_level(logging.WARNING, logger="ffcore.engine")
    first = RunLogger(tmp_path, enabled=True, tensorboard=False)
    first.message("epoch 1/2: loss 1.0")
    first.message("skipped unreadable training image x.jpg", level=logging.WARNING)
    lines = (tmp_path / "train.log").read_text().splitlines()          # readable before close: flushed
    first.close()
    second = RunLogger(tmp_path, enabled=True, tensorboard=False)      # a resumed run continues the file
    second.message("resumed from last.pt after epoch 1")
    second.close()
    every = (tmp_path / "train.log").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in every] == ["epoch 1/2: loss 1.0", "skipped unreadable training image x.jpg",
                                                         "resumed from last.pt after epoch 1"]
    assert every[:2] == lines
    assert all(len(line.split(" ", 1)[0]) == len("2026-01-01T00:00:00") for line in every)
    assert [r.getMessage() for r in caplog.records] == ["skipped unreadable training image x.jpg"]
    RunLogger(tmp_path / "off", enabled=False, tensorboard=False).message("nothing")
    assert not (tmp_path / "off").exists()
