"""Training, distillation and fine-tuning runs of a study: trained once, resumed when interrupted,
reused only when complete.

The catalogue (which runs a profile has, their names, recipes and dependencies) is
`ffcore.runs.plan`; where each run stands (its completion record, fingerprint and lock) is
`ffcore.runs.records`. This module executes a run:

- done (the record says complete, with the profile's fingerprint): reused;
- partial (last.pt holds k of N epochs): resumed from last.pt, bit-exact;
- missing, or `force`: trained from scratch;
- stale (complete, trained with another configuration): an error naming the fields, unless
  `force` retrains it. Never reused silently.

One process owns a run at a time (`records.RunLock`); another one waits for it, or skips it
(`ffcore study train` workers). The tables a notebook shows of a run (trained, resumed from
which epoch, or reused) are in `ffcore.study.training_tables`.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import pandas as pd

from ffcore.runs.context import Study
from ffcore.runs.profiles import SPEED_FIELDS
from ffcore.runs.plan import (REFERENCE_RUNS, PlannedRun, Teacher, model_of_run, offset_run, planned_run, planned_runs,
                              study_plan, teacher_tag, uses_released_teacher, is_random_start)
from ffcore.runs.records import (RunState, StaleRunError, describe_differences, fail_record, finish_record, fingerprint,
                                    how_trained, locked, read_record, run_state, start_record)

# what a clean retraining removes from a run folder (the lock stays: it is ours)
_RUN_FILES = ("run.json", "best.pt", "last.pt", "metrics.csv", "train.log")


class TrainingProgress:
    """One line per training of the whole run, with a rough ETA, on the console that launched it.

    Notebooks run in separate kernels, so what has been trained is read from the run records on
    disk and finished trainings' wall times from results/<profile>/progress.json. The estimate is
    the epochs left (the planned epochs of every other unfinished run) x the mean wall time per epoch
    of the trainings finished so far: the work left for one worker, which side-by-side workers
    share. Runs of 2 and 40 epochs weigh as such, not as one training each."""

    def __init__(self, study: Study):
        self.study = study
        self.path = study.results_root / "progress.json"

    def _times(self) -> dict[str, float]:
        if not self.path.is_file():
            return {}
        return json.loads(self.path.read_text())   # our own file: a torn one is a bug worth seeing

    def _seconds_per_epoch(self, times: dict[str, float]) -> float | None:
        """Mean wall time per epoch of the finished trainings of the plan (None before the first)."""
        epochs = seconds = 0.0
        for run, wall in times.items():
            try:
                epochs += planned_run(self.study.profile, run).epochs
            except (KeyError, ValueError):   # a run of an earlier plan: its length is unknown here
                continue
            seconds += wall
        return seconds / epochs if epochs else None

    def say(self, line: str) -> None:
        print(line, flush=True)
        if sys.__stderr__ is not None and sys.__stderr__ is not sys.stderr:
            # the kernel's own stderr is the terminal of run_all.py
            print(line, file=sys.__stderr__, flush=True)

    @contextlib.contextmanager
    def step(self, run: str, epochs: int, action: str = "training") -> Iterator[None]:
        planned = planned_runs(self.study.profile)
        missing = [r for r in planned if r != run and not _is_complete(self.study, r)]
        times = self._times()
        eta = f"{len(missing)} other trainings left"
        per_epoch = self._seconds_per_epoch(times)
        if per_epoch:
            epochs_left = sum(planned_run(self.study.profile, r).epochs for r in missing)
            eta += f", about {epochs_left * per_epoch / 60:.0f} min of one worker ({epochs_left} epochs)"
        done = len(planned) - len(missing) - (run in planned)
        self.say(f"[{time.strftime('%H:%M:%S')}] {action} {run} ({epochs} epochs); "
                 f"{done}/{len(planned)} trainings of the run done; {eta}")
        start = time.perf_counter()
        yield
        times[run] = round(time.perf_counter() - start, 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{id(self)}.tmp")
        tmp.write_text(json.dumps(times, indent=1) + "\n")
        tmp.replace(self.path)   # several workers write it: never a torn file
        self.say(f"[{time.strftime('%H:%M:%S')}] {run} done in {times[run] / 60:.1f} min")


def study_run(study: Study, run: str, seed: int = 0) -> str:
    """The study's run of `run` (a model or distilled run name without a seed) for its `seed`-th training
    seed, shifted by the profile's `seed_offset` (`ffcore.runs.plan.offset_run`)."""
    return offset_run(study.profile, run, seed)


def _is_complete(study: Study, run: str) -> bool:
    record = read_record(study.run_dir(run))
    return bool(record and record.get("complete"))


# ------------------------------------------------------------------------------- configs

# Which epoch's weights a study run keeps (`TrainConfig.best_metric`), the same for every arm. Not the
# best validation AP: the notebooks report on the held-out split, but a maximum over ~40 noisy
# validations is biased upwards against the papers' final-epoch figures, and a teacher chosen that way
# too. Not the lowest training loss either: a distilled run's loss is its own distillation objective,
# so plain and distilled runs would be chosen by different rules. Part of every run's fingerprint, so
# runs kept by another rule are stale.
CHECKPOINT_RULE = "final"


@lru_cache(maxsize=None)
def _takes_imagenet_backbone(model: str) -> bool:
    """Whether the ImageNet MobileNet file fits `model`'s backbone. Asked once per model: the answer
    builds the model, and `ffcore study status` asks it for every run of the plan."""
    from ffcore.models import create_model
    from ffcore.models.loading import has_imagenet_backbone

    return has_imagenet_backbone(create_model(model))


def _train_config(study: Study, job: PlannedRun):
    from ffcore.engine.config import get_preset

    p = study.profile
    config = get_preset(job.preset, model=job.model, data_root=str(study.data_root),
                        out_dir=str(study.run_dir(job.name)), epochs=job.epochs, image_size=p.image_size,
                        batch_size=p.batch_size, device=study.device, seed=job.seed,
                        progress=False, tensorboard=True, **p.training_speed(),   # tb/ in every run folder
                        max_steps_per_epoch=p.max_steps_per_epoch)
    if job.kind in ("prune", "finetune"):
        # fine-tuning starts from the (pruned) parent's weights, at a tenth of the parent's learning rate
        config = replace(config, lr=config.lr / 10, pretrained_backbone=False)
    elif is_random_start(job.name) or not _takes_imagenet_backbone(job.model):
        # the random-start control, or the ViT variant (no ImageNet file fits its backbone): a deliberate
        # random start, recorded
        config = replace(config, pretrained_backbone=False)
    if p.val_every is not None:
        config = replace(config, val_every=p.val_every)
    # one checkpoint rule for every arm, plain and distilled: the final epoch, as the papers report
    return replace(config, best_metric=CHECKPOINT_RULE)


def run_train_config(study: Study, job: PlannedRun):
    """The TrainConfig `job` trains with in this study (what the pre-flight times and checks)."""
    return _train_config(study, job)


def train_config(study: Study, run: str):
    """The training config `ffcore study train` runs `run` with (what the throughput benchmark times)."""
    return _train_config(study, planned_run(study.profile, run))


def speed_settings(config) -> dict:
    """The speed settings a training config runs with (`run_profiles.SPEED_FIELDS`), for the run record."""
    return {name: getattr(config, name) for name in SPEED_FIELDS}


def _distill_config(study: Study, job: PlannedRun):
    from ffcore.engine.distill import DistillConfig

    return DistillConfig(teacher=job.teacher.model, teacher_weights=str(_teacher_weights(study, job.teacher)))


def _teacher_weights(study: Study, teacher: Teacher) -> Path:
    if teacher.run is not None:
        return study.checkpoint_path(teacher.run)
    path = teacher.shared_path()
    if not path.is_file():
        raise FileNotFoundError(f"teacher weights {path} not found (the shared folder's trained "
                                f"{teacher.model}); the distillation from it cannot run")
    return path


def _dependency_hash(study: Study, job: PlannedRun) -> dict[str, str] | None:
    """The teacher's or parent's checkpoint hash for the fingerprint; None while a study dependency is
    not complete (the fingerprint is then unknown)."""
    from ffcore.checkpoint import file_sha256

    if job.kind == "distill":
        if job.teacher.run is None:
            return {"teacher": file_sha256(_teacher_weights(study, job.teacher))}
        record = read_record(study.run_dir(job.teacher.run))
        return {"teacher": record["best_sha256"]} if record and record.get("complete") else None
    if job.kind in ("prune", "finetune"):
        record = read_record(study.run_dir(job.parent))
        return {"parent": record["best_sha256"]} if record and record.get("complete") else None
    return {}


def expected_fingerprint(study: Study, job: PlannedRun) -> dict | None:
    """The fingerprint the profile asks of `job` now (None while a dependency is unfinished)."""
    dependency = _dependency_hash(study, job)
    if dependency is None:
        return None
    distillation = _distill_config(study, job) if job.kind == "distill" else None
    result = fingerprint(job.kind, _train_config(study, job), study.data_root, distillation,
                         teacher=dependency.get("teacher"), parent=dependency.get("parent"))
    if teacher_tag(job.name) == "" and uses_released_teacher(study.profile):
        # the profile's choice by name, beside the teacher's hash (absent: the teacher trained here, as
        # every run before the choice existed was)
        result["teacher_weights"] = study.profile.teacher_weights
    return result


def job_state(study: Study, job: PlannedRun) -> RunState:
    """Where `job` stands against the profile (a pruned job is done only with its companion). A job
    that is not done while a run it depends on failed (or is itself blocked) is blocked."""
    expected = expected_fingerprint(study, job)
    state = run_state(study.run_dir(job.name), job.name, job.epochs, expected)
    for companion in job.companions:
        if state.done and not _is_complete(study, companion):
            state.state = "partial"
    if state.state in ("partial", "missing") and state.holder is None:
        failed = failed_dependency(study, job)
        if failed:
            state.state, state.blocked_by = "blocked", failed
    return state


def failed_dependency(study: Study, job: PlannedRun, since: str | None = None) -> str | None:
    """The failed run `job` waits on, directly or through its teacher's or parent's own dependencies.
    A failure counts while no process is retrying it, and (with `since`, a record time stamp) only
    when it happened since then: a plan started again retries what failed before."""
    from ffcore.runs.records import live_holder

    for dependency in job.depends_on:
        if _is_complete(study, dependency):
            continue
        failure = (read_record(study.run_dir(dependency)) or {}).get("failed")
        if failure and (since is None or failure["at"] >= since) and live_holder(study.run_dir(dependency)) is None:
            return dependency
        further = failed_dependency(study, planned_run(study.profile, dependency), since)
        if further:
            return further
    return None


# ------------------------------------------------------------------------------ execution

def ensure_run(study: Study, run: str, force: bool = False, wait: bool = True) -> str:
    """Make `run` complete; returns what happened: "trained", "resumed from epoch k" or "reused".

    Its dependencies (teacher, pruned parent) are completed first, never forced. A stale run is
    an error naming the fields that differ, unless `force`. Another process training the run is
    waited for (`wait`) or reported (`records.RunLockedError`)."""
    job = planned_run(study.profile, run)
    for dependency in job.depends_on:
        ensure_run(study, dependency, force=False, wait=True)
    state = job_state(study, job)
    if state.state == "stale" and not force:
        raise StaleRunError(f"run {job.name} is stale: {describe_differences(state.differences)}. "
                            f"Retrain it with --force (run_all.py --force, ffcore study train --force {job.name}); "
                            f"its checkpoints are never reused with another configuration.")
    if state.done and not force:
        return "reused"
    run_dir = study.run_dir(job.name)
    tracker = TrainingProgress(study)
    with locked(run_dir, wait=wait, say=tracker.say):
        state = job_state(study, job)   # another process may have finished it while we waited
        if state.done and not force:
            return "reused"
        # a failed run resumes from its last good epoch, like an interrupted one
        resume_from = 0 if force or state.state not in ("partial", "failed") else state.finished_epochs
        if resume_from == 0 or _must_restart(study, job):
            clear_run(study, job)
            resume_from = 0
        expected = expected_fingerprint(study, job)
        record = start_record(run_dir, expected, job.epochs, "resumed" if resume_from else "trained", resume_from,
                              read_record(run_dir), speed=speed_settings(_train_config(study, job)))
        action = f"resuming from epoch {resume_from}" if resume_from else "training"
        try:
            with tracker.step(job.name, job.epochs, action=action):
                result = _execute(study, job, resume=bool(resume_from))
            result.raise_for_status()
        except Exception as error:   # any training error: recorded in run.json, then raised on unchanged
            fail_record(run_dir, record, error)
            raise
        wall = float(result.history[-1]["wall_time_s"]) if result.history else None
        record = finish_record(run_dir, record, result.epochs_completed, wall,
                               extra={"git_commit": _git_commit()})
        if not record["complete"]:
            return f"partial {result.epochs_completed}/{job.epochs} (stopped as configured)"
        return f"resumed from epoch {resume_from}" if resume_from else "trained"


def _git_commit() -> str | None:
    from ffcore.report.provenance import git_state

    return git_state().get("commit")


def _must_restart(study: Study, job: PlannedRun) -> bool:
    """A pruned job resumes only when its cut model (the companion) is on disk."""
    return any(not study.checkpoint_path(companion).is_file() for companion in job.companions)


def clear_run(study: Study, job: PlannedRun) -> None:
    """Remove a previous attempt's files before training from scratch, so nothing stale survives."""
    for run in (job.name, *job.companions):
        for name in _RUN_FILES:
            path = study.run_dir(run) / name
            if path.exists():
                path.unlink()
        if (study.run_dir(run) / "tb").is_dir():   # a retrained run's curves start again
            import shutil

            shutil.rmtree(study.run_dir(run) / "tb")


def _execute(study: Study, job: PlannedRun, resume: bool):
    from ffcore.engine.distill import distill
    from ffcore.engine.supervised import train

    config = _train_config(study, job)
    if job.kind == "train":
        return train(config, resume=resume)
    if job.kind == "distill":
        return distill(config, _distill_config(study, job), resume=resume)
    if job.kind == "finetune":
        return train(config, resume=resume, model=_parent_model(study, job).train(), kind="finetune")
    return train(config, resume=resume, model=_pruned_model(study, job, keep_cut=not resume), kind="finetune")


def _parent_model(study: Study, job: PlannedRun):
    """The trained parent of a pruned or control job, as loaded. job.parent is a run
    (`featherface_v2_seed100` under a seed offset); its model is what gets built."""
    from ffcore.models import load_pretrained

    return load_pretrained(model_of_run(job.parent), study.checkpoint_path(job.parent))


def _pruned_model(study: Study, job: PlannedRun, keep_cut: bool):
    """The parent cut by L1 pruning (`ffcore.pruning`); on a fresh start also kept as `<run>_not_finetuned`."""
    from ffcore.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
    from ffcore.pruning import DEFAULT_RATIO, prune_context

    parent_checkpoint = study.checkpoint_path(job.parent)
    pruned = prune_context(_parent_model(study, job), DEFAULT_RATIO)
    pruned.name = job.model
    if keep_cut:
        (companion,) = job.companions
        study.run_dir(companion).mkdir(parents=True, exist_ok=True)
        save_checkpoint(study.checkpoint_path(companion),
                        {"format": CHECKPOINT_FORMAT, "model_name": job.model,
                         "model_overrides": dict(getattr(pruned, "overrides", {})), "state_dict": pruned.state_dict(),
                         "kind": "pruned", "epoch": 0, "parent": job.parent,
                         "parent_checkpoint": str(parent_checkpoint), "git_commit": _git_commit()})
        record = start_record(study.run_dir(companion), {**expected_fingerprint(study, job), "kind": "prune_cut"}, 0,
                              "trained", 0, None)
        finish_record(study.run_dir(companion), record, 0, 0.0)
    return pruned.train()


def ensure_checkpoint(study: Study, run: str) -> Path:
    """The best.pt of a complete run, training or resuming it first when needed (never forced).
    A reference run's checkpoint is its shared WIDER FACE weights file."""
    if run in REFERENCE_RUNS:
        from ffcore.checkpoint import file_sha256
        from ffcore.paths import shared_dir

        path = shared_dir().joinpath(*REFERENCE_RUNS[run][1])
        if not path.is_file():
            raise FileNotFoundError(f"{run}: the shared weights {path} are missing")
        study.used_checkpoints[run] = file_sha256(path)
        return path
    ensure_run(study, run, force=False)
    return record_checkpoint(study, run)


def record_checkpoint(study: Study, run: str) -> Path:
    """Note the run's checkpoint (hash, and the commit it was trained at) for the artifacts' provenance."""
    from ffcore.checkpoint import file_sha256

    path = study.checkpoint_path(run)
    study.used_checkpoints[run] = file_sha256(path)
    record = read_record(study.run_dir(run)) or {}
    if record.get("git_commit"):
        study.checkpoint_commits[run] = record["git_commit"]
    return path


def run_states_table(study: Study, only: list[str] | None = None) -> pd.DataFrame:
    """Every job of the profile's plan with its state (done, partial k/N, missing, stale), how it was
    trained, its checkpoint and wall time. Reads the run folders only; trains nothing."""
    rows = []
    for job in study_plan(study.profile, only):
        state = job_state(study, job)
        rows.append({"run": job.name, "kind": job.kind, "depends on": ", ".join(job.depends_on),
                     "state": state.label(), "epochs": f"{state.finished_epochs}/{job.epochs}",
                     "how": how_trained(state.record) if state.record else "",
                     "wall time min": f"{state.wall_time_s / 60:.1f}" if state.wall_time_s else "",
                     "checkpoint": str(state.checkpoint.relative_to(study.results_root)) if state.checkpoint else ""})
    return pd.DataFrame(rows)


