"""A study's trainings as jobs: the plan and its dependencies, completion records (done only when
complete), exact resume of an interrupted run, stale runs named by field, one owner per run,
local worker processes and submitit's local executor, honest starts, DDP resume and validation."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from ffcore.checkpoint import CheckpointError, load_checkpoint_file

# the smoke profile shrunk to seconds per training on one thread
TINY = {"image_size": 64, "batch_size": 4, "max_steps_per_epoch": 1, "epochs": 2, "student_epochs": 2,
        "finetune_epochs": 1, "seeds": (0,)}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from ffcore.runs.datasets import prepare_dataset
    from ffcore.runs.profiles import get_profile

    root = tmp_path_factory.mktemp("smoke_data") / "smoke"
    return prepare_dataset(get_profile("smoke"), root)


@pytest.fixture()
def results(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FFCORE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("FFCORE_FIGURES", str(tmp_path / "figures"))
    return tmp_path / "results"


def tiny_study(data_root: Path, **changes):
    from ffcore.runs.context import open_study

    return open_study("smoke", data_root=data_root, overrides={**TINY, **changes}, prepare_data=False)


# ------------------------------------------------------------------------------------ the plan

def test_plan_orders_runs_after_their_teacher_and_parent():
    from ffcore.runs.plan import dependency_depths, study_plan
    from ffcore.runs.profiles import get_profile

    full = get_profile("full")
    plan = study_plan(full)
    position = {job.name: i for i, job in enumerate(plan)}
    by_name = {job.name: job for job in plan}
    # three seeds of V1, its 7 swaps, V2, V2 distilled, 2 variants and V2 from random weights; one
    # distillation from the WIDER FACE-trained teacher; two pruned variants
    assert len(plan) == len(position) == 3 * (1 + 7 + 1 + 1 + 2 + 1) + 1 + 2
    assert full.teacher_weights == "released"   # V2 learns from the released V1: no wait for V1's training
    assert by_name["featherface_v2_distilled_seed1"].depends_on == ()
    assert by_name["featherface_v2_pruned20"].depends_on == ("featherface_v2",)
    assert by_name["featherface_v2_distilled_eca_cbam_widerface"].depends_on == ()   # shared weights, not a run
    assert "featherface_v2_distilled_v1_widerface" not in by_name     # the same run as featherface_v2_distilled
    for job in plan:
        assert all(position[dep] < position[job.name] for dep in job.depends_on), job.name
    depths = dependency_depths(plan)
    assert depths["featherface_v1"] == 0 and depths["featherface_v2_distilled"] == 0
    trained = study_plan(replace(full, teacher_weights="trained"))
    by_name = {job.name: job for job in trained}
    assert by_name["featherface_v2_distilled_seed1"].depends_on == ("featherface_v1",)
    assert by_name["featherface_v2_distilled_v1_widerface"].depends_on == ()
    assert dependency_depths(trained)["featherface_v2_distilled"] == 1
    narrowed = [job.name for job in study_plan(full, ["featherface_v1_pruned20"])]
    assert narrowed == ["featherface_v1", "featherface_v1_pruned20"]
    with pytest.raises(KeyError, match="not in profile 'full'"):
        study_plan(full, ["featherface_v9"])



def test_model_seeds_train_v1_its_swaps_and_v2_variants_over_seeds_with_the_first_v1_as_teacher():
    from ffcore.runs.plan import one_part_swaps, planned_runs, study_plan, v2_variants
    from ffcore.runs.profiles import get_profile

    long = get_profile("synthetic_seeds")
    runs = planned_runs(long)
    # 42, the released V1 as a second WIDER FACE teacher, and V2 from random weights over 3 seeds
    assert len(runs) == len(set(runs)) == 42 + 1 + 3
    for model in ("featherface_v1", *one_part_swaps(), *v2_variants()):
        assert [run for run in runs if run.startswith(model) and run.removeprefix(model) in ("", "_seed1", "_seed2")] \
            == [model, f"{model}_seed1", f"{model}_seed2"], model
    assert len(one_part_swaps()) == 7 and "featherface_v2_distilled_eca_cbam_widerface" in runs
    assert "featherface_v2_distilled_v1_widerface" in runs        # the released V1 as a real teacher
    by_name = {job.name: job for job in study_plan(long)}
    assert {by_name[f"featherface_v2_distilled_seed{s}"].depends_on for s in (1, 2)} == {("featherface_v1",)}
    assert by_name["featherface_v1_pruned20"].depends_on == ("featherface_v1",)   # pruned from the first seed only
    # the default synthetic profile trains one seed of each: its tables say "one seed: not established"
    assert not any(run.startswith("featherface_v1_seed") for run in planned_runs(get_profile("synthetic")))



def test_swaps_over_model_seeds_are_trained_and_pooled_by_the_ablation_table(data_root, results):
    from ffcore.study.ablations import ablation_table
    from ffcore.study.comparisons import POOLED, v2_v1_comparison

    study = tiny_study(data_root, model_seeds=(0, 1), seeds=(0, 1), ablation_swaps=("featherface_v1_ssh_grouped",))
    table = ablation_table(study).set_index("model")
    assert (results / "smoke" / "checkpoints" / "featherface_v1_ssh_grouped_seed1" / "best.pt").is_file()
    swap = table.loc["featherface_v1_ssh_grouped"]
    assert swap["seeds"] == "2 vs 2, paired by seed" and table.loc["featherface_v1", "seeds"] == "2"
    assert not str(swap["hard verdict"]).startswith("one seed")
    # every run behind the pooled rows, seed by seed, beside the table
    per_seed = pd.read_csv(study.tables_dir / "ablations_per_seed.csv", comment="#")
    assert sorted(zip(per_seed["arm"], per_seed["seed"])) == [
        ("featherface_v1", 0), ("featherface_v1", 1), ("featherface_v1_ssh_grouped", 0), ("featherface_v1_ssh_grouped", 1)]
    mean = per_seed[per_seed["arm"] == "featherface_v1_ssh_grouped"]["AP hard %"].mean()
    assert abs(mean - swap["AP hard %"]) < 0.02
    pooled = v2_v1_comparison(study).set_index("run").loc[POOLED]
    assert (pooled["arm seeds"], pooled["vs seeds"]) == (2, 2) and not str(pooled["hard verdict"]).startswith("one seed")



def test_v2_vit_is_also_compared_with_v2_from_random_weights(data_root, results):
    from ffcore.study.ablations import v2_variants_table

    study = tiny_study(data_root, v2_variants=("featherface_v2_vit",), random_start_control=True)
    table = v2_variants_table(study)
    control = table[table["model"] == "featherface_v2_random_start"]
    assert list(control["role"]) == ["control: V2 from random weights"]
    against = table[(table["model"] == "featherface_v2_vit") & (table["vs"] == "featherface_v2_random_start")]
    assert len(against) == 1 and "featherface_v2_vit" in set(table.loc[table["vs"] == "featherface_v2", "model"])
    payload = load_checkpoint_file(results / "smoke" / "checkpoints" / "featherface_v2_random_start" / "best.pt")
    assert payload["train_config"]["pretrained_backbone"] is False and payload["model_name"] == "featherface_v2"


def test_a_pruned_run_under_a_seed_offset_is_cut_from_its_shifted_parent(data_root, results):
    from ffcore.study.training_tables import finetune_pruned_or_load

    study = tiny_study(data_root, seed_offset=100)
    finetune_pruned_or_load(study, "featherface_v2_pruned20")
    checkpoints = results / "smoke" / "checkpoints"
    for run in ("featherface_v2_seed100", "featherface_v2_pruned20_seed100",
                "featherface_v2_pruned20_not_finetuned_seed100"):
        assert (checkpoints / run / "best.pt").is_file(), run
    cut = load_checkpoint_file(checkpoints / "featherface_v2_pruned20_not_finetuned_seed100" / "best.pt")
    assert cut["model_name"] == "featherface_v2_pruned20" and cut["parent"] == "featherface_v2_seed100"


# ------------------------------------------------------------------- completion, resume, staleness

def _interrupt_after(monkeypatch, epochs: int) -> None:
    """Make the next training stop after `epochs` epochs, as a killed process would leave it."""
    import ffcore.runs.training as training

    original = training._train_config
    monkeypatch.setattr(training, "_train_config",
                        lambda study, job: replace(original(study, job), stop_after_epoch=epochs))


def test_an_interrupted_run_is_partial_then_resumes_to_the_uninterrupted_weights(data_root, results, monkeypatch):
    from ffcore.runs.training import ensure_run, job_state, run_states_table
    from ffcore.study.training_tables import train_or_load
    from ffcore.runs.plan import planned_run

    straight = tiny_study(data_root, epochs=3)
    assert ensure_run(straight, "featherface_v1") == "trained"
    reference = load_checkpoint_file(straight.run_dir("featherface_v1") / "last.pt")["state_dict"]

    monkeypatch.setenv("FFCORE_RESULTS", str(results.parent / "interrupted"))
    study = tiny_study(data_root, epochs=3)
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 1)
        assert ensure_run(study, "featherface_v1").startswith("partial 1/3")
    # best.pt exists after the first epoch: existence is not completion
    assert study.checkpoint_path("featherface_v1").is_file()
    state = job_state(study, planned_run(study.profile, "featherface_v1"))
    assert state.state == "partial" and state.label() == "partial 1/3"
    assert "partial 1/3" in run_states_table(study, ["featherface_v1"])["state"].iloc[0]

    table = train_or_load(study, "featherface_v1")
    assert table["status"].iloc[0] == "resumed from epoch 1"
    assert table["epochs run"].iloc[0] == 3 and table["planned epochs"].iloc[0] == 3
    resumed = load_checkpoint_file(study.run_dir("featherface_v1") / "last.pt")["state_dict"]
    assert all(torch.equal(reference[k], resumed[k]) for k in reference), "resume differs from one straight run"
    record = json.loads((study.run_dir("featherface_v1") / "run.json").read_text())
    assert record["complete"] and record["finished_epochs"] == 3
    assert [s["action"] for s in record["sessions"]] == ["trained", "resumed"]
    again = train_or_load(study, "featherface_v1")
    assert again["status"].iloc[0] == "reused (resumed from epoch 1)"


def test_a_complete_run_with_another_configuration_is_stale_and_retrained_only_with_force(data_root, results):
    from ffcore.runs.records import StaleRunError
    from ffcore.runs.training import ensure_run, run_states_table

    ensure_run(tiny_study(data_root), "featherface_v2")
    longer = tiny_study(data_root, student_epochs=3)
    states = run_states_table(longer, ["featherface_v2"])
    assert states["state"].iloc[0] == "stale (train.epochs)"
    with pytest.raises(StaleRunError, match=r"train.epochs: trained with 2, profile asks 3.*--force"):
        ensure_run(longer, "featherface_v2")
    assert ensure_run(longer, "featherface_v2", force=True) == "trained"
    assert run_states_table(longer, ["featherface_v2"])["state"].iloc[0] == "done"


def test_a_retrained_teacher_makes_its_students_stale(data_root, results):
    from ffcore.runs.training import ensure_run, run_states_table

    study = tiny_study(data_root)
    ensure_run(study, "featherface_v2_distilled")        # trains the teacher first
    assert set(run_states_table(study, ["featherface_v2_distilled"])["state"]) == {"done"}
    ensure_run(study, "featherface_v1", force=True)
    # a retrained teacher with the same seed gives the same weights: force a different one
    record_path = study.run_dir("featherface_v1") / "run.json"
    record = json.loads(record_path.read_text())
    record["best_sha256"] = "0" * 12
    record_path.write_text(json.dumps(record))
    state = run_states_table(study, ["featherface_v2_distilled"]).set_index("run")["state"]
    assert state["featherface_v2_distilled"] == "stale (teacher_checkpoint)"


# --------------------------------------------------------------------------------------- locks

def test_one_owner_per_run_and_a_dead_owner_is_taken_over(tmp_path):
    from ffcore.runs.records import RunLock, RunLockedError

    first = RunLock(tmp_path)
    assert first.try_acquire() is None
    holder = RunLock(tmp_path).try_acquire()
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    with pytest.raises(RunLockedError, match=f"process {os.getpid()} on host {socket.gethostname()}"):
        RunLock(tmp_path).acquire(wait=False)
    first.release()
    assert not (tmp_path / "lock.json").exists()

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "lock.json").write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout),
                                                    "started": "earlier"}))
    taker = RunLock(tmp_path)
    assert taker.try_acquire() is None and taker.took_over["pid"] == int(dead.stdout)
    taker.release()


def test_two_worker_processes_share_the_plan_without_training_a_run_twice(data_root, results):
    from ffcore.runs.jobs import StudyArguments, start_workers
    from ffcore.runs.records import read_record

    arguments = StudyArguments("smoke", data_root=str(data_root), overrides=TINY)
    runs = ["featherface_v2_distilled", "featherface_v2"]
    lines: list[str] = []
    assert start_workers(arguments, 2, runs, threads=1, say=lines.append) == 0
    study = tiny_study(data_root)
    for run in ("featherface_v1", "featherface_v2", "featherface_v2_distilled"):
        record = read_record(study.run_dir(run))
        assert record["complete"] and len(record["sessions"]) == 1, run   # trained once, by one worker
    trained = [line for line in lines if line.endswith(": trained")]
    assert len(trained) == 3 and {line.split("] ")[0] for line in lines if "]" in line} >= {"[worker 1", "[worker 2"}


def test_submitit_local_executor_runs_a_plan_with_one_dependency(data_root, results):
    from ffcore.runs.jobs import ClusterOptions, StudyArguments, submit_plan
    from ffcore.runs.records import read_record

    arguments = StudyArguments("smoke", data_root=str(data_root), overrides=TINY)
    jobs = submit_plan(arguments, ClusterOptions(cluster="local", time_limit_min=10, gpus_per_job=0,
                                                 folder=str(results / "submitit")),
                       runs=["featherface_v2_distilled"], say=lambda line: None)
    assert len(jobs) == 2
    outcomes = [job.result() for job in jobs]     # raises with the job's traceback if one failed
    assert outcomes == ["trained", "trained"]
    study = tiny_study(data_root)
    teacher = read_record(study.run_dir("featherface_v1"))
    student = read_record(study.run_dir("featherface_v2_distilled"))
    assert teacher["complete"] and student["complete"]
    assert student["fingerprint"]["teacher_checkpoint"] == teacher["best_sha256"]
    # the dependent job waited for its teacher
    assert student["sessions"][0]["started"] >= teacher["sessions"][0]["ended"]


def test_study_status_command_prints_every_run_state(data_root, results):
    env = {**os.environ, "FFCORE_RESULTS": str(results)}
    out = subprocess.run([sys.executable, "-m", "ffcore", "study", "status", "--profile", "smoke", "--data",
                          str(data_root)], capture_output=True, text=True, env=env, check=True).stdout
    assert "featherface_v2_distilled" in out and "missing" in out
    plan = subprocess.run([sys.executable, "-m", "ffcore", "study", "plan", "--profile", "synthetic"],
                          capture_output=True, text=True, env=env, check=True).stdout
    assert "featherface_v2_distilled: distil from featherface_v1" in plan and "after featherface_v1" in plan


# --------------------------------------------------------------------------------- honest starts

def test_a_missing_imagenet_file_stops_training_and_names_the_file(tmp_path, monkeypatch):
    import ffcore.paths
    from ffcore.engine.supervised import build_model, initialisation
    from ffcore.engine.config import get_preset

    monkeypatch.setattr(ffcore.paths, "find_imagenet_backbone", lambda: None)
    with pytest.raises(CheckpointError, match="mobilenetV1X0.25_pretrain.tar not found.*--pretrained-backbone none"):
        build_model("featherface_v1", {}, True, seed=0)
    model = build_model("featherface_v1", {}, False, seed=0)        # a deliberate random start
    assert model is not None
    assert initialisation(get_preset("smoke", model="featherface_v1", pretrained_backbone=False)).startswith("random")


# --------------------------------------------------------------------------------- DDP pieces

def test_resume_refuses_another_world_size_unless_allowed(data_root, tmp_path):
    from ffcore.checkpoint import save_checkpoint
    from ffcore.engine.config import get_preset
    from ffcore.engine.supervised import train

    config = get_preset("smoke", data_root=str(data_root), out_dir=str(tmp_path / "run"), image_size=64, epochs=2,
                        max_steps_per_epoch=1, stop_after_epoch=1)
    train(config)
    last = tmp_path / "run" / "last.pt"
    payload = load_checkpoint_file(last)
    save_checkpoint(last, {**payload, "world_size": 4})
    with pytest.raises(CheckpointError, match="trained by 4 process.*allow-world-size-change"):
        train(replace(config, stop_after_epoch=None), resume=True)
    result = train(replace(config, stop_after_epoch=None, allow_world_size_change=True), resume=True)
    assert result.epochs_completed == 2


def test_sharded_validation_gives_the_single_process_ap(data_root):
    from ffcore.eval.predict import evaluate_model
    from ffcore.eval.sharded import evaluate_shards, predict_shard
    from ffcore.models import create_model

    torch.manual_seed(0)
    model = create_model("featherface_v2").eval()
    whole = evaluate_model(model, data_root, scale=128, progress=False)
    shards = [predict_shard(model, data_root, rank, 3, scale=128) for rank in range(3)]
    assert sum(len(s) for s in shards) == len({(e, n) for s in shards for e, n, _ in s})
    split = evaluate_shards(shards, data_root)
    assert split.ap == whole.ap


def test_the_summary_lists_every_run_with_how_it_was_trained(data_root, results, monkeypatch):
    from ffcore.report.summary import write_summary
    from ffcore.runs.training import ensure_run

    study = tiny_study(data_root, epochs=3)
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 1)
        ensure_run(study, "featherface_v1")
    text = write_summary("smoke").read_text()
    assert "| featherface_v1 | INCOMPLETE | 1/3 | trained |" in text
    ensure_run(study, "featherface_v1")
    text = write_summary("smoke", wall_times=[("trainings (2 workers)", "ok", 60.0), ("01_baseline", "ok", 30.0)])
    text = text.read_text()
    assert "| featherface_v1 | complete | 3/3 | resumed from epoch 1 |" in text
    assert "| trainings (2 workers) | ok | 1.0 min |" in text and "| total | | 1.5 min |" in text


def test_the_long_profile_plans_the_budget_curve_the_own_recipe_and_the_pruning_control():
    from ffcore.runs.plan import (is_own_recipe, model_of_run, planned_run, planned_runs, run_epochs, study_plan,
                                   teacher_of_run)
    from ffcore.runs.profiles import get_profile

    long = get_profile("synthetic_long")
    runs = planned_runs(long)
    assert len(runs) == len(set(runs)) == 34
    budget = [run for run in runs if run_epochs(run) and not is_own_recipe(run)]
    # every arm at every length over three seeds, like the profile's own length
    arms = [f"{model}_ep{epochs}" for epochs in (20, 40)
            for model in ("featherface_v1", "featherface_v2", "featherface_v2_distilled")]
    assert budget == [run + suffix for run in arms for suffix in ("", "_seed1", "_seed2")]
    jobs = {run: planned_run(long, run) for run in runs}
    assert {(jobs[r].model, jobs[r].epochs, jobs[r].preset) for r in budget if "_ep40" in r} == {
        ("featherface_v1", 40, "synthetic_cpu"), ("featherface_v2", 40, "synthetic_cpu")}
    # the budget's distillation keeps the profile's teacher run: only the student's length changes
    assert jobs["featherface_v2_distilled_ep40"].depends_on == ("featherface_v1",)
    assert teacher_of_run(long, "featherface_v2_distilled_ep40_seed3").run == "featherface_v1"
    # V2's own recipe at 40 epochs, where its schedule has room, against V2 shared at 40, three seeds
    own_long = [run for run in runs if is_own_recipe(run)]
    assert own_long == ["featherface_v2_own_recipe_ep40", "featherface_v2_own_recipe_ep40_seed1",
                        "featherface_v2_own_recipe_ep40_seed2"]
    assert {(jobs[r].preset, jobs[r].epochs) for r in own_long} == {("synthetic_cpu_v2_thesis", 40)}
    # synthetic_seeds keeps the own recipe at the shared length, over its three seeds
    seeds_profile = get_profile("synthetic_seeds")
    own = [run for run in planned_runs(seeds_profile) if is_own_recipe(run)]
    assert own == ["featherface_v2_own_recipe", "featherface_v2_own_recipe_seed1", "featherface_v2_own_recipe_seed2"]
    jobs.update({run: planned_run(seeds_profile, run) for run in own})
    assert {(jobs[r].preset, jobs[r].epochs, jobs[r].kind) for r in own} == {("synthetic_cpu_v2_thesis", 10, "train")}
    control = jobs["featherface_v2_finetuned_unpruned"]
    pruned = jobs["featherface_v2_pruned20"]
    assert (control.kind, control.parent, control.epochs, control.preset, control.seed) == \
        ("finetune", "featherface_v2", pruned.epochs, pruned.preset, pruned.seed)
    assert "featherface_v1_finetuned_unpruned" in runs and model_of_run("featherface_v1_finetuned_unpruned") == \
        "featherface_v1"
    # among the runs ready at once, the longest start first (side-by-side workers end on the short ones)
    order = [job.name for job in study_plan(long)]
    lengths = [jobs[name].epochs for name in order if not jobs[name].depends_on]   # ready at once
    assert lengths[:lengths.count(40)] == [40] * lengths.count(40) and lengths.count(40) == 9
    assert order.index("featherface_v2_distilled_ep40") < order.index("featherface_v2_distilled")
    # the default profile trains none of them
    assert not [run for run in planned_runs(get_profile("synthetic")) if run_epochs(run) or is_own_recipe(run)
                or run.endswith("_unpruned")]


def test_an_own_recipe_run_needs_a_profile_that_names_the_recipe():
    from ffcore.runs.plan import planned_run
    from ffcore.runs.profiles import get_profile

    with pytest.raises(ValueError, match="student_own_preset"):
        planned_run(get_profile("synthetic"), "featherface_v2_own_recipe")


def test_budget_curve_and_own_recipe_are_trained_evaluated_and_pooled(data_root, results):
    from ffcore.eval.bootstrap import ONE_SEED
    from ffcore.study.budget import budget_differences, budget_figure, budget_table, own_recipe_comparison
    from ffcore.study.comparisons import POOLED

    study = tiny_study(data_root, seeds=(0, 1), budget_epochs=(3,), student_own_preset="synthetic_cpu_v2_thesis")
    table = budget_table(study)
    assert [(row.arm, row.epochs, row.seeds) for row in table.itertuples()] == [
        ("featherface_v1", 2, 1), ("featherface_v1", 3, 1), ("featherface_v2", 2, 2), ("featherface_v2", 3, 2),
        ("featherface_v2_distilled", 2, 2), ("featherface_v2_distilled", 3, 2)]
    assert (table["hard CI low"] <= table["AP hard %"]).all() and (table["AP hard %"] <= table["hard CI high"]).all()
    record = json.loads((results / "smoke" / "checkpoints" / "featherface_v2_distilled_ep3" / "run.json").read_text())
    assert record["complete"] and record["planned_epochs"] == 3
    differences = budget_differences(study).set_index("comparison")
    at_two = differences.loc["featherface_v2_distilled vs featherface_v2 at 2 epochs"]
    assert at_two["seeds"] == "2 vs 2, paired by seed" and at_two["hard verdict"] != ONE_SEED
    # every length over the arm's seeds: the longer one is pooled too
    at_three = differences.loc["featherface_v2_distilled vs featherface_v2 at 3 epochs"]
    assert at_three["seeds"] == "2 vs 2, paired by seed" and at_three["hard verdict"] != ONE_SEED
    assert differences.loc["featherface_v2 vs featherface_v1 at 3 epochs", "hard verdict"] == ONE_SEED
    assert budget_figure(study) is not None and (results.parent / "figures" / "smoke" / "training_budget.png").is_file()
    own = own_recipe_comparison(study)
    pooled = own[own["run"] == POOLED].iloc[0]
    assert pooled["comparison"] == "featherface_v2_own_recipe vs featherface_v2" and pooled["seeds"] == "1 vs 2"
    payload = load_checkpoint_file(results / "smoke" / "checkpoints" / "featherface_v2_own_recipe" / "best.pt")
    assert payload["train_config"]["schedule"] == "warmup_cosine" and payload["train_config"]["cutmix_prob"] == 0.5


def test_a_profile_without_them_says_so_and_writes_nothing(data_root, results):
    from ffcore.study.budget import budget_figure, budget_table, own_recipe_comparison

    study = tiny_study(data_root, budget_epochs=(), student_own_preset=None)
    assert "budget_epochs" in budget_table(study).iloc[0]["status"]
    assert "student_own_preset" in own_recipe_comparison(study).iloc[0]["status"]
    assert budget_figure(study) is None
    assert not list((results / "smoke").glob("tables/*budget*")) and not (results / "smoke" / "checkpoints").exists()


def test_the_pruning_control_fine_tunes_the_unpruned_parent_like_the_pruned_model(data_root, results):
    from ffcore.study.ablations import pruned_table

    study = tiny_study(data_root, pruning_control=True)
    table = pruned_table(study)
    v2 = table[table["variant"] == "featherface_v2_pruned20"].set_index("run")
    assert list(v2.index) == ["featherface_v2", "featherface_v2_pruned20_not_finetuned", "featherface_v2_pruned20",
                              "featherface_v2_finetuned_unpruned"]
    assert v2.loc["featherface_v2_finetuned_unpruned", "stage"].startswith("control")
    assert pd_notna(v2.loc["featherface_v2_pruned20", "dhard AP pts vs control"])
    checkpoints = results / "smoke" / "checkpoints"
    control = load_checkpoint_file(checkpoints / "featherface_v2_finetuned_unpruned" / "best.pt")
    pruned = load_checkpoint_file(checkpoints / "featherface_v2_pruned20" / "best.pt")
    parent = load_checkpoint_file(checkpoints / "featherface_v2" / "best.pt")
    assert control["kind"] == pruned["kind"] == "finetune"
    assert control["train_config"]["lr"] == pruned["train_config"]["lr"] == parent["train_config"]["lr"] / 10
    assert control["train_config"]["seed"] == pruned["train_config"]["seed"]
    # the control starts from the parent's weights, not from a fresh model
    assert control["initialisation"] == "given model (finetune)"


def pd_notna(value) -> bool:
    import pandas as pd

    return bool(pd.notna(value))


def test_the_progress_line_weighs_the_trainings_left_by_their_epochs(results, capsys):
    from ffcore.runs.context import open_study
    from ffcore.runs.plan import planned_run, planned_runs
    from ffcore.runs.training import TrainingProgress

    study = open_study("synthetic_long", prepare_data=False)
    progress = TrainingProgress(study)
    progress.path.parent.mkdir(parents=True)
    # 10 + 10 + 2 epochs in 1100 s: 50 s an epoch
    progress.path.write_text(json.dumps({"featherface_v1": 500, "featherface_v2": 500, "featherface_v1_pruned20": 100}))
    with progress.step("featherface_v1_ep40", 40):
        pass
    others = [run for run in planned_runs(study.profile) if run != "featherface_v1_ep40"]
    epochs = sum(planned_run(study.profile, run).epochs for run in others)
    line = capsys.readouterr().out.splitlines()[0]
    assert f"{len(others)} other trainings left, about {epochs * 50 / 60:.0f} min of one worker ({epochs} epochs)" in line


# ------------------------------------------------------------------------------ jobs that keep going

def test_a_failed_run_is_recorded_blocks_its_dependents_and_the_other_runs_go_on(data_root, results, monkeypatch):
    import ffcore.runs.training as training
    from ffcore.engine.trainer import TrainingDivergedError
    from ffcore.runs.jobs import plan_summary, train_plan
    from ffcore.runs.plan import planned_run
    from ffcore.runs.records import read_record

    study = tiny_study(data_root)
    execute = training._execute

    def diverge_the_teacher(study_, job, resume):
        if job.name == "featherface_v1":
            raise TrainingDivergedError("non-finite loss at epoch 1 step 0")
        return execute(study_, job, resume)

    runs = ["featherface_v2_distilled", "featherface_v1_pruned20", "featherface_v2"]
    lines: list[str] = []
    with monkeypatch.context() as patch:
        patch.setattr(training, "_execute", diverge_the_teacher)
        outcome = train_plan(study, runs, say=lines.append, poll_s=0.1)
    assert not outcome.ok
    assert outcome.failed == {"featherface_v1": "TrainingDivergedError: non-finite loss at epoch 1 step 0"}
    assert outcome.blocked == {"featherface_v2_distilled": "featherface_v1",
                               "featherface_v1_pruned20": "featherface_v1"}
    assert outcome.handled == [("featherface_v2", "trained")]
    record = read_record(study.run_dir("featherface_v1"))
    assert not record["complete"] and record["failed"]["error"].startswith("TrainingDivergedError")
    assert record["sessions"][-1]["outcome"] == "failed"
    states = {job: training.job_state(study, planned_run(study.profile, job)) for job in runs}
    assert states["featherface_v2_distilled"].label() == "blocked by featherface_v1"
    assert states["featherface_v2"].done
    summary, complete = plan_summary(study, runs)
    assert not complete
    # the pruned run's plan includes featherface_v1 once; featherface_v2 trained
    assert summary[0] == "profile smoke: 4 runs, 2 blocked, 1 done, 1 failed"
    assert any(line.startswith("  FAILED  featherface_v1 at epoch 0/2: TrainingDivergedError") for line in summary)
    assert "  BLOCKED featherface_v1_pruned20: waits on featherface_v1, which failed" in summary

    # the next pass retries the failed run (its earlier failure blocks nothing now) and completes the plan
    again = train_plan(study, runs, say=lines.append, poll_s=0.1)
    assert again.ok and dict(again.handled)["featherface_v1"] == "trained"
    assert plan_summary(study, runs)[1]
    assert "failed" not in read_record(study.run_dir("featherface_v1"))


def test_the_device_type_is_part_of_a_runs_fingerprint(data_root, results):
    from ffcore.runs.plan import planned_run
    from ffcore.runs.training import expected_fingerprint

    job = planned_run(tiny_study(data_root).profile, "featherface_v1")
    on_cpu = expected_fingerprint(tiny_study(data_root), job)
    assert on_cpu["train.device"] == "cpu"
    from ffcore.runs.context import open_study

    on_gpu = expected_fingerprint(open_study("smoke", data_root=data_root, device="cuda", overrides=TINY,
                                             prepare_data=False), job)
    assert on_gpu["train.device"] == "cuda" and {k for k in on_cpu if on_cpu[k] != on_gpu[k]} == {"train.device"}


def test_local_workers_go_on_past_a_run_whose_checkpoint_is_corrupt(data_root, results):
    from support import corrupt_interrupted_run

    from ffcore.runs.jobs import StudyArguments, plan_summary, start_workers
    from ffcore.runs.records import read_record

    study = tiny_study(data_root)
    corrupt_interrupted_run(study, "featherface_v1")
    arguments = StudyArguments("smoke", data_root=str(data_root), overrides=TINY)
    runs = ["featherface_v2_distilled", "featherface_v1_pruned20", "featherface_v2"]
    lines: list[str] = []
    assert start_workers(arguments, 2, runs, threads=1, say=lines.append) == 1
    failure = read_record(study.run_dir("featherface_v1"))["failed"]
    assert failure["epoch"] == 1 and failure["last_checkpoint"].endswith("featherface_v1/last.pt")
    assert read_record(study.run_dir("featherface_v2"))["complete"]
    summary = "\n".join(lines)
    assert "profile smoke: 4 runs, 2 blocked, 1 done, 1 failed" in summary
    assert "  FAILED  featherface_v1 at epoch 1/2: CheckpointError: cannot resume " in summary
    assert "it lacks train_config, state_dict" in failure["error"] and "(last good checkpoint " in summary
    assert "  BLOCKED featherface_v2_distilled: waits on featherface_v1, which failed" in summary
    assert plan_summary(study, runs)[1] is False
