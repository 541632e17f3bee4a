"""`ffcore study run` and run_all.py, its wrapper: the parameters reach the notebooks, the help works, and
`full` refuses to start without data."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ffcore.cli import study as cli
from ffcore.runs.notebooks import NOTEBOOKS, describe_failure, notebook_dir, select_notebooks

REPO = Path(__file__).resolve().parents[2]


def parameters_cell(notebook: Path) -> dict:
    """The names and literal values assigned in the cell tagged `parameters`."""
    cells = [c for c in json.loads(notebook.read_text())["cells"]
             if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{notebook.name}: expected one cell tagged 'parameters', found {len(cells)}"
    tree = ast.parse("".join(cells[0]["source"]))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body}


def full_args() -> list[str]:
    return ["--profile", "synthetic", "--data", "/tmp/some-data", "--device", "cpu", "--force",
            "--epochs", "3", "--image-size", "128", "--override", "bench_repeats=2"]


def test_every_notebook_exists():
    for name in NOTEBOOKS:
        assert (notebook_dir() / f"{name}.ipynb").is_file(), name


def test_every_parameter_run_all_passes_is_in_each_parameters_cell():
    # All options given, so every parameter run_all can pass is present.
    params = cli.notebook_parameters(cli.build_run_parser().parse_args(full_args()))
    assert set(params) == {"profile", "data_root", "device", "force", "epochs", "image_size", "overrides"}
    assert params["overrides"] == {"bench_repeats": 2}
    # tuples travel as lists (papermill would turn a tuple into its string)
    assert cli.notebook_overrides(["seeds=(0, 1)", "name=abc"]) == {"seeds": [0, 1], "name": "abc"}
    for name in NOTEBOOKS:
        declared = parameters_cell(notebook_dir() / f"{name}.ipynb")
        missing = set(params) - set(declared)
        assert not missing, f"{name}.ipynb: run_all passes {sorted(missing)} but its parameters cell lacks them"
        # the value types agree with the defaults (None defaults accept anything)
        for key, value in params.items():
            if declared[key] is not None:
                assert isinstance(value, type(declared[key])), (name, key, value, declared[key])


def test_parameters_follow_the_command_line():
    args = cli.build_run_parser().parse_args(["--profile", "full", "--data", "data/x", "--device", "cuda"])
    params = cli.notebook_parameters(args)
    assert params["profile"] == "full" and params["device"] == "cuda" and params["force"] is False
    assert Path(params["data_root"]).is_absolute() and params["data_root"].endswith("data/x")
    assert "epochs" not in params and "image_size" not in params   # the profile decides


def test_only_selects_notebooks_by_number_in_order():
    assert select_notebooks(["05", "03"]) == ["03_distillation", "05_benchmarks"]
    assert select_notebooks(None) == list(NOTEBOOKS)
    with pytest.raises(SystemExit, match="matches no notebook"):
        select_notebooks(["07"])


def test_failure_message_names_notebook_and_cell():
    from papermill.exceptions import PapermillExecutionError

    error = PapermillExecutionError(cell_index=7, exec_count=4, source="study.evaluate_runs(ctx)\nmore",
                                    ename="ValueError", evalue="no predictions", traceback=[])
    message = describe_failure("03_distillation", error)
    assert message.startswith("notebook 03_distillation.ipynb failed in cell 7 (execution count 4): "
                              "study.evaluate_runs(ctx)")
    assert "ValueError: no predictions" in message


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "run_all.py"), *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_help_works():
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    for option in ("--profile", "--data", "--device", "--only", "--force", "--cpus-per-job", "--mem"):
        assert option in result.stdout
    study_run = subprocess.run([sys.executable, "-m", "ffcore", "study", "run", "--help"], capture_output=True,
                               text=True, timeout=120, cwd=REPO)
    assert study_run.returncode == 0 and study_run.stdout.split("\n\n", 1)[1] == result.stdout.split("\n\n", 1)[1]


def test_full_without_data_fails_with_a_clear_message(tmp_path):
    missing = tmp_path / "no-widerface-here"
    result = _run("--profile", "full", "--data", str(missing), "--device", "cpu")
    assert result.returncode == 2
    assert "cannot run profile 'full'" in result.stderr
    assert str(missing) in result.stderr and "data/README.md" in result.stderr
    assert "[1/" not in result.stdout   # no notebook started


def test_full_with_an_incomplete_tree_names_what_is_missing(tmp_path):
    (tmp_path / "train").mkdir()
    result = _run("--profile", "full", "--data", str(tmp_path), "--device", "cpu")
    assert result.returncode == 2
    assert "incomplete" in result.stderr and "data/README.md" in result.stderr


@pytest.mark.slow     # the five notebooks again, after nbval's run of them: `make test-all`
def test_full_profile_runs_every_notebook_on_a_generated_widerface_tree(tmp_path):
    """The `full` path without WIDER FACE: `ffcore synth` writes the exact WIDER FACE layout, run_all
    runs the five notebooks on it with CPU overrides, every artifact is written and stamped synthetic
    (the tree carries the generator's marker, wherever it lies)."""
    import os

    data = tmp_path / "widerface"
    env = {**os.environ, "FFCORE_RESULTS": str(tmp_path / "results"), "FFCORE_FIGURES": str(tmp_path / "figures"),
           "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "ffcore", "synth", "--out", str(data), "--train-images", "4",
                    "--val-images", "3"], check=True, env=env, capture_output=True, timeout=120)
    overrides = ["max_steps_per_epoch=1", "batch_size=2", "synthetic_long_side=(160, 256)", "seeds=(0, 1)",
                 "real_photo_scale='256'",
                 "finetune_epochs=1", "bootstrap_resamples=50", "bench_sizes=(128,)", "bench_repeats=1",
                 "bench_backends=('torch',)", "bench_models=('featherface_v1', 'featherface_v2')", "flops_size=128",
                 "val_every=0", "workers=0",
                 # every run under a seed offset, and the recipe questions: names no unit test builds end to end
                 "seed_offset=100", "budget_epochs=(2,)", "pruning_control=True",
                 "student_own_preset='synthetic_cpu_v2_thesis'"]
    command = [sys.executable, str(REPO / "run_all.py"), "--profile", "full", "--data", str(data), "--device", "cpu",
               "--epochs", "1", "--image-size", "64"] + [f"--override={o}" for o in overrides]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for name in NOTEBOOKS:
        assert name in run.stdout and "FAILED" not in run.stdout
        assert (tmp_path / "results" / "full" / "notebooks" / f"{name}.ipynb").is_file()
    tables = tmp_path / "results" / "full" / "tables"
    assert (tables / "real_photo_check.csv").is_file()   # real photos: stamped as such, not as synthetic
    for table in ("v1_ap", "distillation_ap", "distillation_comparison", "ablations", "v2_variants", "pruned",
                  "benchmark", "training_budget", "training_budget_differences", "v2_own_recipe"):
        assert (tables / f"{table}.csv").is_file(), table
        sidecar = json.loads((tables / f"{table}.json").read_text())
        assert sidecar["dataset"] == "synthetic", table    # a generated tree copied anywhere stays synthetic
    figures = tmp_path / "figures" / "full"
    for figure in ("v1_ap_intervals", "distillation_comparison_intervals", "ablations_intervals", "latency"):
        assert (figures / f"{figure}.png").is_file(), figure
    assert (tmp_path / "results" / "full" / "summary.md").is_file()
    checkpoints = tmp_path / "results" / "full" / "checkpoints"
    assert (checkpoints / "featherface_v2_distilled_ep2_seed100" / "best.pt").is_file()
    assert (checkpoints / "featherface_v2_finetuned_unpruned_seed100" / "best.pt").is_file()
    # every run under the offset, whatever seeds a comparison takes (seeds, model_seeds): none at seed 0-99
    assert not [path.name for path in checkpoints.iterdir() if not re.search(r"_seed1\d\d$", path.name)]


def test_default_profile_is_synthetic_without_widerface_and_says_why(tmp_path):
    profile, why = cli.default_profile(tmp_path / "no-widerface")
    assert profile == "synthetic"
    assert "not complete" in why and "no-widerface" in why


def test_smoke_copies_drop_the_injected_parameters_so_the_smoke_defaults_apply(tmp_path):
    from ffcore.runs.notebooks import write_smoke_copies

    source = tmp_path / "notebooks"
    source.mkdir()
    notebook = {"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "profile = 'smoke'\n",
                           "outputs": [], "execution_count": None},
                          {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]},
                           "source": "profile = 'synthetic'\n", "outputs": [], "execution_count": None},
                          {"cell_type": "code", "metadata": {"papermill": {"duration": 1.0}}, "source": "study.x(ctx)",
                           "outputs": [], "execution_count": None}],
                "metadata": {"papermill": {"parameters": {"profile": "synthetic"}}}, "nbformat": 4, "nbformat_minor": 5}
    (source / "01_x.ipynb").write_text(json.dumps(notebook))
    [copy] = write_smoke_copies(source, tmp_path / "copies")
    cells = json.loads(copy.read_text())["cells"]
    assert [c["source"] for c in cells[1:]] == ["profile = 'smoke'\n", "study.x(ctx)"]
    # the copy names its notebook first, so the artifacts it writes declare where they come from
    assert cells[0]["metadata"]["tags"] == ["declared-notebook"] and "'01_x'" in cells[0]["source"]
    assert "papermill" not in json.loads(copy.read_text())["metadata"]


def _option_strings(parser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def test_run_all_is_study_run_and_takes_the_cluster_options_of_study_submit():
    import argparse

    from ffcore.cli import build_parser as ffcore_parser

    study = next(a for a in ffcore_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["study"]
    actions = next(a for a in study._actions if isinstance(a, argparse._SubParsersAction)).choices
    cluster = argparse.ArgumentParser()
    cli.add_cluster_options(cluster)
    cluster_options = _option_strings(cluster) - {"-h", "--help"}
    assert {"--cpus-per-job", "--gpus-per-job", "--mem", "--account", "--qos", "--constraint"} <= cluster_options
    assert cluster_options <= _option_strings(actions["submit"])
    assert _option_strings(actions["run"]) == _option_strings(cli.build_run_parser())
    assert cluster_options <= _option_strings(cli.build_run_parser())
    # a CPU profile's jobs ask for no GPU; a cuda one's for one, unless told
    from ffcore.runs.context import open_study
    from ffcore.runs.jobs import ClusterOptions

    smoke = open_study("smoke", prepare_data=False)
    assert cli.cluster_options(cli.build_run_parser().parse_args([])).resources(smoke) == (0, 1)
    gpu = open_study("smoke", device="cuda", prepare_data=False)
    assert ClusterOptions().resources(gpu) == (1, 1) and ClusterOptions(gpus_per_job=2, cpus_per_job=6).resources(
        gpu) == (2, 6)
