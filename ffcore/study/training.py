"""Training, distillation and fine-tuning runs of a study: trained once, resumed when interrupted,
reused only when complete.

The catalogue (which runs a profile has, their names, recipes and dependencies) is
`ffcore.study.plan`; where each run stands (its completion record, fingerprint and lock) is
`ffcore.study.run_state`. This module executes a run:

- done (the record says complete, with the profile's fingerprint): reused;
- partial (last.pt holds k of N epochs): resumed from last.pt, bit-exact;
- missing, or `force`: trained from scratch;
- stale (complete, trained with another configuration): an error naming the fields, unless
  `force` retrains it. Never reused silently.

One process owns a run at a time (`run_state.RunLock`); another one waits for it, or skips it
(`ffcore study train` workers). The training tables say, per run, whether it was trained,
resumed (from which epoch) or reused.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pandas as pd

from ffcore.study.context import Study
from ffcore.study.plan import (DISTILLED_SUFFIX, NOT_FINETUNED_SUFFIX, REFERENCE_RUNS, V2_VARIANTS,  # noqa: F401
                               WIDERFACE_TEACHERS, PlannedRun, Teacher, model_of_run, offset_run, planned_run,
                               planned_runs, pruned_parent, recipe, reference_runs, seeded_run, split_seed,
                               study_plan, study_pruned_variants, teacher_of_run, trained_on, widerface_teacher_runs)
from ffcore.study.run_state import (RunState, StaleRunError, describe_differences, fail_record, finish_record,
                                    fingerprint, how_trained, locked, read_record, run_state, start_record)

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
    seed, shifted by the profile's `seed_offset` (`ffcore.study.plan.offset_run`)."""
    return offset_run(study.profile, run, seed)


def _is_complete(study: Study, run: str) -> bool:
    record = read_record(study.run_dir(run))
    return bool(record and record.get("complete"))


# ------------------------------------------------------------------------------- configs

def _train_config(study: Study, job: PlannedRun):
    from ffcore.engine.config import get_preset
    from ffcore.models import create_model
    from ffcore.models.loading import has_imagenet_backbone

    p = study.profile
    config = get_preset(job.preset, model=job.model, data_root=str(study.data_root),
                        out_dir=str(study.run_dir(job.name)), epochs=job.epochs, image_size=p.image_size,
                        batch_size=p.batch_size, device=study.device, seed=job.seed,
                        workers=p.workers, progress=False, tensorboard=False,
                        max_steps_per_epoch=p.max_steps_per_epoch)
    if job.kind in ("prune", "finetune"):
        # fine-tuning starts from the (pruned) parent's weights, at a tenth of the parent's learning rate
        config = replace(config, lr=config.lr / 10, pretrained_backbone=False)
    elif not has_imagenet_backbone(create_model(job.model)):
        # e.g. the ViT variant: no ImageNet file fits its backbone; a deliberate random start, recorded
        config = replace(config, pretrained_backbone=False)
    if p.val_every is not None:
        config = replace(config, val_every=p.val_every)
    if config.val_every <= 0 and config.best_metric != "loss":
        # no validation during training: keep the checkpoint with the lowest training loss
        config = replace(config, best_metric="loss")
    return config


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
    return fingerprint(job.kind, _train_config(study, job), study.data_root, distillation,
                       teacher=dependency.get("teacher"), parent=dependency.get("parent"))


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
    from ffcore.study.run_state import live_holder

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
    waited for (`wait`) or reported (`run_state.RunLockedError`)."""
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
            _clear_run(study, job)
            resume_from = 0
        expected = expected_fingerprint(study, job)
        record = start_record(run_dir, expected, job.epochs, "resumed" if resume_from else "trained", resume_from,
                              read_record(run_dir))
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
    from ffcore.provenance import git_state

    return git_state().get("commit")


def _must_restart(study: Study, job: PlannedRun) -> bool:
    """A pruned job resumes only when its cut model (the companion) is on disk."""
    return any(not study.checkpoint_path(companion).is_file() for companion in job.companions)


def _clear_run(study: Study, job: PlannedRun) -> None:
    """Remove a previous attempt's files before training from scratch, so nothing stale survives."""
    for run in (job.name, *job.companions):
        for name in _RUN_FILES:
            path = study.run_dir(run) / name
            if path.exists():
                path.unlink()


def _execute(study: Study, job: PlannedRun, resume: bool):
    from ffcore.engine.distill import distill
    from ffcore.engine.train import train

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
    return _record(study, run)


def _record(study: Study, run: str) -> Path:
    """Note the run's checkpoint (hash, and the commit it was trained at) for the artifacts' provenance."""
    from ffcore.checkpoint import file_sha256

    path = study.checkpoint_path(run)
    study.used_checkpoints[run] = file_sha256(path)
    record = read_record(study.run_dir(run)) or {}
    if record.get("git_commit"):
        study.checkpoint_commits[run] = record["git_commit"]
    return path


def run_history(study: Study, run: str) -> pd.DataFrame:
    """The per-epoch metrics of a run (its metrics.csv)."""
    path = study.run_dir(run) / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics for run {run!r}: {path} does not exist; train it first "
                                f"(study.train_or_load(ctx, {run!r}))")
    return pd.read_csv(path)


def _status(action: str, record: dict | None) -> str:
    """"trained", "resumed from epoch k", or "reused (trained | resumed from epoch k)"."""
    return f"reused ({how_trained(record)})" if action == "reused" else action


def _run_row(study: Study, run: str, action: str) -> dict:
    from ffcore.checkpoint import load_checkpoint_file

    payload = load_checkpoint_file(study.checkpoint_path(run))
    record = read_record(study.run_dir(run)) or {}
    history = run_history(study, run) if (study.run_dir(run) / "metrics.csv").is_file() else pd.DataFrame()
    best = payload.get("best_metric") or {}
    task = "loss_task" if "loss_task" in history else "loss"   # distillation logs its task loss apart
    row = {"run": run, "model": payload.get("model_name", model_of_run(run)), "status": _status(action, record),
           "kind": payload.get("kind", "train"), "planned epochs": record.get("planned_epochs"),
           "epochs run": int(history["epoch"].max()) if "epoch" in history else 0,
           "best epoch": payload.get("epoch"),
           "final task loss": round(float(history[task].iloc[-1]), 4) if task in history else None,
           "best metric": f"{best.get('name')} = {best.get('value'):.4g}" if best.get("value") is not None else "",
           "train time s": round(float(history["wall_time_s"].iloc[-1]), 1) if "wall_time_s" in history else None,
           "trained at commit": (payload.get("git_commit") or "")[:10] + ("+dirty" if payload.get("git_dirty") else ""),
           "checkpoint": study.used_checkpoints.get(run, "")}
    if payload.get("teacher_name"):
        row["teacher"] = f"{payload['teacher_name']}@{payload.get('teacher_sha256', '?')}"
    return row


def _save_run_table(study: Study, run: str, action: str) -> pd.DataFrame:
    table = pd.DataFrame([_run_row(study, run, action)])
    row = table.iloc[0]
    study.save_table(table, f"training_{run}", caption=f"Training run {run}: {row['status']}", checkpoints=[run],
                     headline=f"{run}: {row['epochs run']} of {row['planned epochs']} epochs ({row['status']}), "
                              f"final training task loss {row['final task loss']}")
    return table


def train_or_load(study: Study, run: str, force: bool | None = None) -> pd.DataFrame:
    """Train a registered model with its recipe in the profile (`plan.recipe`), resume it when a
    previous attempt stopped, or reuse it when complete. `<model>_seed<N>` trains with seed N."""
    force = study.force if force is None else force
    action = ensure_run(study, run, force=force)
    _record(study, run)
    return _save_run_table(study, run, action)


def distill_or_load(study: Study, teacher: str | None = None, student: str | None = None,
                    force: bool | None = None, seed: int = 0, run: str | None = None) -> pd.DataFrame:
    """Distil a teacher into the student with the student recipe (the one V2 alone trains with), resume
    or reuse it. Default: the profile's teacher, trained first if missing. `run` names another
    teacher (`featherface_v2_distilled_eca_cbam_widerface`) and/or a seed (`..._seed1`)."""
    if run is None:
        student = student or study.profile.student
        if teacher not in (None, study.profile.teacher):
            raise ValueError(f"teacher {teacher!r}: name a teacher other than the profile's through run="
                             f"'{student}{DISTILLED_SUFFIX}_<tag>' with a tag of {', '.join(WIDERFACE_TEACHERS)}")
        run = study_run(study, student + DISTILLED_SUFFIX, seed)
    if teacher_of_run(study.profile, run) is None:
        raise ValueError(f"run {run!r} is not a distillation run (no {DISTILLED_SUFFIX!r} in its name)")
    return train_or_load(study, run, force=force)


def widerface_teacher_table(study: Study) -> pd.DataFrame:
    """Distil V2 from each WIDER FACE-trained teacher the profile chooses (`widerface_teachers`),
    or reuse the checkpoints: one row per run. A profile that chooses none gets an empty table
    that says so, rather than a training the time budget has no room for."""
    runs = widerface_teacher_runs(study.profile)
    if not runs:
        chosen = study.profile.widerface_teachers
        why = ("the profile's widerface_teachers is empty" if chosen is not None
               else "no WIDER FACE-trained teacher's model and weights are available")
        return pd.DataFrame([{"run": "none", "status": f"not trained: {why}"}])
    return pd.concat([distill_or_load(study, run=run) for run in runs], ignore_index=True)


def distillation_runs(study: Study) -> list[str]:
    """V2 alone, V2 distilled from the profile's teacher (seed 0), then from each WIDER FACE teacher trained."""
    student = study.profile.student
    return [study_run(study, student), study_run(study, student + DISTILLED_SUFFIX),
            *widerface_teacher_runs(study.profile)]


def finetune_pruned_or_load(study: Study, variant: str, force: bool | None = None) -> pd.DataFrame:
    """Prune the trained parent of `variant` (L1, `ffcore.pruning`), keep that model as
    `<variant>_not_finetuned`, then fine-tune it for the profile's `finetune_epochs` with the
    parent's recipe at a tenth of its learning rate. Resumes or reuses like every run."""
    if pruned_parent(variant) is None:
        raise ValueError(f"{variant!r} is not a registered pruned variant")
    force = study.force if force is None else force
    run = study_run(study, variant)
    action = ensure_run(study, run, force=force)
    _record(study, study_run(study, variant + NOT_FINETUNED_SUFFIX))
    _record(study, run)
    return _save_run_table(study, run, action)


def seed_runs_table(study: Study) -> pd.DataFrame:
    """V2 alone and V2 distilled from the profile's teacher for every training seed of the profile
    (trained or loaded), one row per run: the central comparison's repetitions."""
    student = study.profile.student
    tables = []
    for seed in study.profile.seeds:
        tables.append(train_or_load(study, study_run(study, student, seed)))
        tables.append(distill_or_load(study, seed=seed))
    return pd.concat(tables, ignore_index=True)


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


def training_curves_figure(study: Study, runs: list[str], name: str = "training_curves"):
    """Training loss (and validation AP where the recipe validated) per epoch, one line per run."""
    from ffcore.plotting import model_styles, new_figure, pretty_name

    histories = {run: run_history(study, run) for run in runs}
    has_ap = any("ap_hard" in h and h["ap_hard"].notna().any() for h in histories.values())
    fig, axes = new_figure(ncols=2 if has_ap else 1, aspect=0.4 if has_ap else 0.55)
    axes = axes[0] if has_ap else [axes]
    styles = model_styles(runs)
    labels = {run: pretty_name(run, teacher=study.profile.teacher) for run in runs}
    for run, history in histories.items():
        style = styles[run]
        # the task loss is comparable across runs; a distillation run's total objective is not
        task = "loss_task" if "loss_task" in history else "loss"
        axes[0].plot(history["epoch"], history[task], label=labels[run], color=style["color"],
                     marker=style["marker"], markevery=max(1, len(history) // 10))
        if task != "loss":
            axes[0].plot(history["epoch"], history["loss"], color=style["color"], linestyle="--",
                         label=f"{labels[run]}: distillation objective")
        if has_ap and "ap_hard" in history:
            valid = history.dropna(subset=["ap_hard"])
            for setting, dash in (("easy", ":"), ("medium", "--"), ("hard", "-")):
                axes[1].plot(valid["epoch"], 100 * valid[f"ap_{setting}"], linestyle=dash, color=style["color"],
                             marker=style["marker"], label=f"{labels[run]} {setting}")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("training task loss (2·box + class + landmark)")
    if has_ap:
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("validation AP (%)")
    # above the panels, never over a curve (below, the provenance stamp): one legend for both panels
    handles, names = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.append(handle)
            names.append(label)
    fig.legend(handles, names, loc="outside upper center", fontsize=7, frameon=False,
               ncol=1 if max(map(len, names)) > 45 else min(len(names), 2))
    final = {run: float(h["loss_task" if "loss_task" in h else "loss"].iloc[-1]) for run, h in histories.items()}
    for run in runs:
        if study.checkpoint_path(run).is_file():
            _record(study, run)
    return study.save_figure(fig, name, checkpoints=runs,
                             headline="final training task loss " + ", ".join(f"{r} {v:.3f}" for r, v in final.items()))


