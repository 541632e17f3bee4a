"""What a sidecar says about the code, the data and the machine (ffcore.report.provenance)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ffcore.report.provenance import (NOTEBOOK_ENV, Provenance, dataset_fingerprint, environment, git_state,
                               write_table)

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def notebook(source: str, output: str, injected: str | None = None) -> str:
    cells = [{"cell_type": "code", "source": source, "metadata": {}, "execution_count": 1,
              "outputs": [{"output_type": "stream", "name": "stdout", "text": output}]}]
    if injected is not None:    # papermill's cell: a run's parameters
        cells.insert(0, {"cell_type": "code", "source": injected, "metadata": {"tags": ["injected-parameters"]},
                         "execution_count": 1, "outputs": []})
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "ffcore").mkdir()
    (tmp_path / "ffcore" / "x.py").write_text("A = 1\n")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "01_a.ipynb").write_text(notebook("study.x(ctx)", "1.0"))
    (tmp_path / "README.md").write_text("readme\n")
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return tmp_path


def test_dirty_means_the_code_changed_not_the_results_or_outputs(repo):
    assert git_state(repo)["dirty"] is False
    (repo / "README.md").write_text("changed\n")
    # a rerun's outputs and parameters
    (repo / "notebooks" / "01_a.ipynb").write_text(notebook("study.x(ctx)", "2.0", injected="profile = 'full'"))
    (repo / "results").mkdir()
    (repo / "results" / "t.csv").write_text("a\n")
    state = git_state(repo)
    assert state["dirty"] is False and state["diff_sha256"] is None and len(state["commit"]) == 40


def test_a_changed_source_cell_or_module_is_dirty_and_hashed(repo):
    (repo / "notebooks" / "01_a.ipynb").write_text(notebook("study.y(ctx)", "1.0"))
    first = git_state(repo)
    assert first["dirty"] is True and first["diff_sha256"]
    (repo / "ffcore" / "x.py").write_text("A = 2\n")
    second = git_state(repo)
    assert second["dirty"] is True and second["diff_sha256"] != first["diff_sha256"]
    (repo / "ffcore" / "new.py").write_text("B = 1\n")          # an untracked module is code too
    assert git_state(repo)["diff_sha256"] != second["diff_sha256"]


def test_outside_a_checkout_the_state_is_unknown(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None, "diff_sha256": None}


def test_dataset_fingerprint_follows_the_manifest(tmp_path):
    assert dataset_fingerprint(tmp_path) is None
    (tmp_path / "synth_manifest.json").write_text('{"seed": 0}')
    first = dataset_fingerprint(tmp_path)
    assert first["file"] == "synth_manifest.json"
    (tmp_path / "synth_manifest.json").write_text('{"seed": 1}')
    assert dataset_fingerprint(tmp_path)["sha256"] != first["sha256"]


def test_identical_datasets_generated_at_different_speeds_hash_alike(tmp_path):
    from ffcore.runs.records import data_manifest_hash

    roots = {}
    for name, seconds, seed in (("fast", 12.5, 0), ("slow", 301.0, 0), ("other", 12.5, 1)):
        roots[name] = tmp_path / name
        roots[name].mkdir()
        manifest = {"fingerprint": f"abc{seed}", "config": {"seed": seed}, "generation_seconds": seconds}
        (roots[name] / "synth_manifest.json").write_text(json.dumps(manifest, indent=2))
    fingerprints = {name: dataset_fingerprint(root)["sha256"] for name, root in roots.items()}
    hashes = {name: data_manifest_hash(root) for name, root in roots.items()}
    for digest in (fingerprints, hashes):
        assert digest["fast"] == digest["slow"] and digest["fast"] != digest["other"]


def test_sidecar_records_seeds_preset_environment_notebook_and_manifest(tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.setenv(NOTEBOOK_ENV, "03_distillation")
    data = tmp_path / "data"
    data.mkdir()
    (data / "synth_manifest.json").write_text("{}")
    provenance = Provenance(profile="smoke", dataset="synthetic", checkpoints={"v2": "abc"}, seeds=[0, 1],
                            preset={"train": {"name": "smoke", "epochs": 1}}, data_root=str(data),
                            checkpoint_commits={"v2": "0123456789abcdef"})
    paths = write_table(pd.DataFrame({"a": [1]}), tmp_path / "tables", "t", provenance, caption="c")
    record = json.loads(paths["json"].read_text())
    assert record["seeds"] == [0, 1] and record["preset"]["train"]["name"] == "smoke"
    assert record["notebook"] == "03_distillation" and record["dataset_manifest"]["file"] == "synth_manifest.json"
    assert set(record["environment"]["versions"]) == {"torch", "torchvision", "onnxruntime", "numpy"}
    assert record["environment"]["cpu_count"] and record["checkpoint_commits"] == {"v2": "0123456789abcdef"}
    assert "data_root" not in record and set(record["git"]) == {"commit", "dirty", "diff_sha256"}


def test_environment_imports_nothing_heavy():
    code = ("import sys; from ffcore.report.provenance import environment; environment(); "
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules)")
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([__import__("sys").executable, "-c", code], cwd=repo, capture_output=True, text=True,
                            env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert environment()["python"]


def test_the_summary_states_the_duration_measured_from_empty_caches(tmp_path, monkeypatch):
    from ffcore.report.summary import _measured_duration, elapsed_seconds

    monkeypatch.setenv("FFCORE_RESULTS", str(tmp_path))
    assert elapsed_seconds("1:01:02") == 3662 and elapsed_seconds("12:34.5") == 754.5
    assert _measured_duration("synthetic_long") == []   # no log: no section
    log = tmp_path / "synthetic_long" / "run_from_empty_caches.log"
    log.parent.mkdir(parents=True)
    log.write_text("part 1\n\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:30:00\npart 2 (shared with tests)\n"
                   "\tElapsed (wall clock) time (h:mm:ss or m:ss): 45:00.00\npart 3, killed\n"
                   "Elapsed (wall clock from the part's start and stop times) (h:mm:ss or m:ss): 0:10:30\n")
    section = "\n".join(_measured_duration("synthetic_long"))
    assert "3 parts timed, 145.5 min of wall clock in all (90.0, 45.0, 10.5 min)" in section
    log.write_text("no timing here\n")
    with pytest.raises(ValueError, match="no GNU time timing"):
        _measured_duration("synthetic_long")


def test_a_notebook_opened_in_jupyterlab_names_itself_from_the_session_jupyter_server_gives_its_kernel(monkeypatch):
    """A study notebook run by hand (no run_all.py, no declaring cell) still declares its notebook,
    read from the variable Jupyter Server's session manager puts in the kernel's environment."""
    from jupyter_server.services.sessions.sessionmanager import SessionManager

    from ffcore.report.provenance import JUPYTER_SESSION_ENV, writing_notebook

    monkeypatch.delenv(NOTEBOOK_ENV, raising=False)
    kernel_env = SessionManager.get_kernel_env(SessionManager.__new__(SessionManager), "notebooks/04_ablations.ipynb")
    monkeypatch.setenv(JUPYTER_SESSION_ENV, kernel_env[JUPYTER_SESSION_ENV])
    assert writing_notebook() == "04_ablations"
    monkeypatch.setenv(NOTEBOOK_ENV, "01_baseline")          # what run_all.py declares wins
    assert writing_notebook() == "01_baseline"
    monkeypatch.delenv(NOTEBOOK_ENV)
    monkeypatch.setenv(JUPYTER_SESSION_ENV, "console-1")     # a console, not a notebook
    assert writing_notebook() is None
