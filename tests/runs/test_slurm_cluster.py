"""The smoke plan on a real one-node SLURM cluster (Debian's slurm-wlm and munge, `slurm_cluster.py`),
submitted as a user would from a node without GPU: `run_all.py --profile smoke --launcher slurm`, no
cluster option. One job is requeued in the middle of its training (`scontrol requeue`, as a
preemption would) and must resume; every run must end done with its planned epochs, as
`ffcore study status` reports it.

Runs as root (slurmd starts the jobs); `.ci/run` runs it. About 3-5 minutes on two cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slurm_cluster import SlurmCluster

REPO = Path(__file__).resolve().parents[2]
PLAN_TIMEOUT_S = 540
# Smoke epochs of one step last a third of a second, less than SLURM takes to kill a requeued job's
# step (two to three seconds, submitit ignoring the SIGTERM): ten epochs of six steps give the requeue
# a middle to hit.
LONGER_EPOCHS = ("--epochs", "10", "--override", "max_steps_per_epoch=6")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="the test cluster's slurmd must run as root")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm")
    cluster = SlurmCluster(root)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def _environment(cluster: SlurmCluster, results: Path) -> dict[str, str]:
    environment = {**cluster.environment(), "FFCORE_RESULTS": str(results / "results"),
                   "FFCORE_FIGURES": str(results / "figures"), "OMP_NUM_THREADS": "1"}
    # the jobs must find this code tree by themselves (submit_plan exports it into their script)
    environment.pop("PYTHONPATH", None)
    return environment


def _epochs_done(run_dir: Path) -> int:
    """Epochs in the run's metrics.csv (one row an epoch, written as each ends)."""
    metrics = run_dir / "metrics.csv"
    return max(0, len(metrics.read_text().splitlines()) - 1) if metrics.is_file() else 0


def _requeue_mid_training(cluster: SlurmCluster, checkpoints: Path, runs: list[str], timeout_s: float) -> str:
    """Requeue the job of the first of `runs` seen with an epoch done and more to go; returns the run."""
    import json

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for run in runs:
            lock = checkpoints / run / "lock.json"
            record = checkpoints / run / "run.json"
            if not (lock.is_file() and record.is_file()):
                continue
            try:
                holder = json.loads(lock.read_text())
                planned = json.loads(record.read_text())["planned_epochs"]
            except (json.JSONDecodeError, FileNotFoundError):
                continue      # caught mid-write: look again
            if 1 <= _epochs_done(checkpoints / run) < planned and holder.get("slurm_job_id"):
                cluster.scontrol("requeue", holder["slurm_job_id"])
                return run
        time.sleep(0.05)
    raise AssertionError(f"none of {runs} was seen mid-training within {timeout_s:.0f} s")


def _wait_for_the_queue(cluster: SlurmCluster, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while cluster.squeue():
        jobs = cluster.squeue()
        stuck = [job for job in jobs if job["state"] == "PENDING" and job["reason"] in
                 ("PartitionConfig", "DependencyNeverSatisfied", "ReqNodeNotAvail")]
        assert not stuck, f"jobs that can never start: {stuck}"
        assert time.monotonic() < deadline, f"the plan is not done after {timeout_s:.0f} s: {jobs}"
        time.sleep(2)


def test_the_smoke_plan_runs_to_done_on_slurm_with_one_job_requeued_mid_training(cluster, tmp_path):
    from ffcore.runs.plan import study_plan
    from ffcore.runs.profiles import get_profile

    environment = _environment(cluster, tmp_path)
    data = tmp_path / "data"
    start = time.monotonic()
    submitted = subprocess.run([sys.executable, str(REPO / "run_all.py"), "--profile", "smoke", "--data", str(data),
                                "--launcher", "slurm", *LONGER_EPOCHS], cwd=REPO, env=environment, capture_output=True,
                               text=True, timeout=300)
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    plan = study_plan(get_profile("smoke").with_overrides(epochs=10, fields={"max_steps_per_epoch": 6}))
    assert submitted.stdout.count("submitted featherface") == len(plan) > 0
    assert "asking 0 GPU(s) and 1 CPU core(s) each" in submitted.stdout
    # a student waits for its own teacher's job only
    student = next(line for line in submitted.stdout.splitlines() if "submitted featherface_v2_distilled " in line)
    teacher = next(line for line in submitted.stdout.splitlines() if "submitted featherface_v1 as" in line)
    assert student.endswith(f"after afterok:{teacher.split()[-1]}")

    checkpoints = tmp_path / "results" / "smoke" / "checkpoints"
    # V1's trainings are the slowest of the plan (deformable convolutions): requeued after its first epoch,
    # a V1 run still has seconds of training left when SLURM's kill arrives, even on an idle machine
    longest = [job.name for job in plan if job.epochs == max(j.epochs for j in plan)]
    longest = [run for run in longest if next(j for j in plan if j.name == run).model == "featherface_v1"] or longest
    requeued = _requeue_mid_training(cluster, checkpoints, longest, timeout_s=240)
    _wait_for_the_queue(cluster, PLAN_TIMEOUT_S - (time.monotonic() - start))
    wall = time.monotonic() - start
    print(f"\nthe smoke plan ({len(plan)} jobs, {requeued} requeued) took {wall:.0f} s on SLURM, submission included")

    status = subprocess.run([sys.executable, "-m", "ffcore", "study", "status", "--profile", "smoke", "--data",
                             str(data), *LONGER_EPOCHS], cwd=REPO, env={**environment, "PYTHONPATH": str(REPO)},
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    rows = {line.split()[0]: line for line in status.stdout.splitlines() if line.strip().startswith("featherface")}
    for job in plan:
        line = rows[job.name]
        assert f" done {job.epochs}/{job.epochs} " in f" {' '.join(line.split())} ", line
    # the state counts, then the plan line (the work left: none)
    assert f"done {len(plan)}" in status.stdout.strip().splitlines()[-2:], status.stdout[-600:]
    logs = "\n".join(path.read_text() for path in (tmp_path / "results" / "smoke" / "submitit").rglob("*_log.out")
                     if f"training {requeued} " in path.read_text())
    assert "resumed from epoch" in rows[requeued], rows[requeued] + "\n" + logs

    import json

    record = json.loads((checkpoints / requeued / "run.json").read_text())
    sessions = record["sessions"]
    assert [s["action"] for s in sessions] == ["trained", "resumed"]
    assert sessions[0]["slurm_job_id"] == sessions[1]["slurm_job_id"]   # the same job, requeued
    assert 1 <= sessions[1]["from_epoch"] < record["planned_epochs"] == record["finished_epochs"]


def test_a_failed_job_cancels_only_its_dependents_and_submitting_again_submits_what_is_not_done(
        cluster, tmp_path, monkeypatch):
    from support import corrupt_interrupted_run

    from ffcore.runs.context import open_study
    from ffcore.runs.datasets import prepare_dataset
    from ffcore.runs.profiles import get_profile

    environment = _environment(cluster, tmp_path)
    monkeypatch.setenv("FFCORE_RESULTS", environment["FFCORE_RESULTS"])
    data = prepare_dataset(get_profile("smoke"), tmp_path / "data")
    corrupt_interrupted_run(open_study("smoke", data_root=data, prepare_data=False), "featherface_v1")
    runs = ["featherface_v2_distilled", "featherface_v1_pruned20", "featherface_v2"]
    submit = [sys.executable, "-m", "ffcore", "study", "submit", "--profile", "smoke", "--data", str(data), *runs]

    first = subprocess.run(submit, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert first.stdout.count("submitted featherface") == 4
    _wait_for_the_queue(cluster, 300)

    status = subprocess.run([sys.executable, "-m", "ffcore", "study", "status", "--profile", "smoke", "--data",
                             str(data)], cwd=REPO, env=environment, capture_output=True, text=True, timeout=120)
    rows = {line.split()[0]: " ".join(line.split()) for line in status.stdout.splitlines()
            if line.strip().startswith("featherface")}
    assert " failed at epoch 1/2 (" in rows["featherface_v1"], rows["featherface_v1"]
    for blocked in ("featherface_v2_distilled", "featherface_v1_pruned20"):
        assert " blocked by featherface_v1 " in rows[blocked], rows[blocked]
    assert " done 2/2 " in rows["featherface_v2"]

    # again: only the runs that are not done; while those jobs wait, a third submission adds none
    again = subprocess.run(submit, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    submitted = [line.split()[1] for line in again.stdout.splitlines() if line.startswith("submitted ")]
    assert sorted(submitted) == ["featherface_v1", "featherface_v1_pruned20", "featherface_v2_distilled"]
    third = subprocess.run(submit, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)
    assert "submitted featherface" not in third.stdout and third.stdout.count("not submitted again") >= 1
    cluster.cancel_all()


def test_jobs_no_node_can_run_are_refused_before_anything_is_submitted(cluster, tmp_path):
    environment = _environment(cluster, tmp_path)
    submit = [sys.executable, "-m", "ffcore", "study", "submit", "--profile", "smoke", "--data", str(tmp_path / "d"),
              "featherface_v1"]
    too_many = subprocess.run([*submit, "--cpus-per-job", str(cluster.cpus + 6)], cwd=REPO, env=environment,
                              capture_output=True, text=True, timeout=300)
    assert too_many.returncode == 2
    assert (f"each job asks {cluster.cpus + 6} CPU cores but the largest node of the default partition has "
            f"{cluster.cpus}; pass --cpus-per-job {cluster.cpus}") in too_many.stderr
    gpu = subprocess.run([*submit, "--gpus-per-job", "1"], cwd=REPO, env=environment, capture_output=True, text=True,
                         timeout=300)
    assert gpu.returncode == 2 and "no node of the default partition has a GPU" in gpu.stderr
    assert not cluster.squeue()
