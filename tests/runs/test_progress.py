"""Progress you can watch: `ffcore study train` prints a line per epoch (epoch k/N, loss, images/s,
the run's ETA), every study run writes TensorBoard events, and `ffcore study status` shows
epoch k/N, images/s and ETA per run and for the plan, with failed and blocked runs named."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["--image-size", "64", "--override", "batch_size=4", "--override", "max_steps_per_epoch=1",
        "--epochs", "2", "--override", "finetune_epochs=1", "--override", "seeds=(0,)"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from ffcore.runs.datasets import prepare_dataset
    from ffcore.runs.profiles import get_profile

    return prepare_dataset(get_profile("smoke"), tmp_path_factory.mktemp("smoke_data") / "smoke")


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    """featherface_v1 trained by `ffcore study train` in its own process: (results, its stderr)."""
    results = tmp_path_factory.mktemp("results")
    env = {**os.environ, "FFCORE_RESULTS": str(results), "FFCORE_FIGURES": str(results / "figures")}
    done = subprocess.run([sys.executable, "-m", "ffcore", "study", "train", "--profile", "smoke", "--data",
                           str(data_root), *TINY, "--threads", "1", "featherface_v1"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return results, env, done.stderr


def _status(data_root, env, *extra) -> str:
    return subprocess.run([sys.executable, "-m", "ffcore", "study", "status", "--profile", "smoke", "--data",
                           str(data_root), *TINY, *extra], capture_output=True, text=True, env=env, check=True).stdout


def test_study_train_prints_a_line_per_epoch_with_images_per_second_and_eta(trained):
    _, _, console = trained
    lines = [line for line in console.splitlines() if re.search(r"epoch \d/2: ", line)]
    assert len(lines) == 2, console[-2000:]
    for line in lines:
        assert re.search(r"loss [\d.]+", line) and re.search(r"images_per_s [\d.]+", line)
        assert re.search(r"ETA [\d.]+ (s|min|h)$", line)
    assert lines[-1].endswith("ETA 0 s")


def test_every_study_run_writes_tensorboard_events(trained):
    results, _, _ = trained
    events = list((results / "smoke" / "checkpoints" / "featherface_v1" / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_status_shows_epochs_images_per_second_and_etas(data_root, trained):
    results, env, _ = trained
    out = _status(data_root, env, "--workers", "2")
    header = out.splitlines()[0]
    assert "images/s" in header and "ETA" in header
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.split()}
    v1 = rows["featherface_v1"]
    assert "done" in v1 and "2/2" in v1 and re.search(r" \d+\.\d ", v1)      # its measured images/s
    # a run not started yet that trains like a measured one gets that run's time per epoch
    budget = rows["featherface_v1_ep3"]
    assert "missing" in budget and "0/3" in budget and "(as featherface_v1)" in budget
    assert "ETA" in header and rows["featherface_v2"].rstrip().endswith("?")   # nothing like V2 has run
    plan = out.splitlines()[-1]
    assert plan.startswith("plan: ") and "with 2 side by side about" in plan


def test_status_names_failed_and_blocked_runs_from_their_records(data_root, trained, tmp_path):
    import shutil

    results, env, _ = trained
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    env = {**env, "FFCORE_RESULTS": str(copy)}
    failed = copy / "smoke" / "checkpoints" / "featherface_v2"
    failed.mkdir(parents=True)
    (failed / "run.json").write_text(json.dumps({
        "fingerprint": {}, "planned_epochs": 2, "finished_epochs": 1, "complete": False, "sessions": [],
        "state": "failed", "error": "non-finite loss at epoch 2, step 1\nmore"}))
    blocked = copy / "smoke" / "checkpoints" / "featherface_v2_pruned20"
    blocked.mkdir(parents=True)
    (blocked / "run.json").write_text(json.dumps({
        "fingerprint": {}, "planned_epochs": 1, "finished_epochs": 0, "complete": False, "sessions": [],
        "state": "blocked", "blocked_by": ["featherface_v2"]}))
    out = _status(data_root, env)
    assert "failed: non-finite loss at epoch 2, step 1" in out and "more" not in out
    assert "blocked: featherface_v2" in out
    assert "2 run(s) failed or blocked, not counted: featherface_v2, featherface_v2_pruned20" in out.splitlines()[-1]
