"""The training runs a notebook shows: train, distil or fine-tune a planned run (or reuse it,
`ffcore.runs.training.ensure_run`) and save its one-row table, the seed and teacher tables, the
per-epoch history and the training curves. What a run is and how it trains is `ffcore.runs`."""

from __future__ import annotations

import pandas as pd

from ffcore.runs.context import Study
from ffcore.runs.plan import (DISTILLED_SUFFIX, NOT_FINETUNED_SUFFIX, WIDERFACE_TEACHERS, model_of_run, pruned_parent,
                              teacher_display_name, teacher_of_run, widerface_teacher_runs)
from ffcore.runs.records import how_trained, read_record
from ffcore.runs.training import ensure_run, record_checkpoint, study_run


def run_history(study: Study, run: str) -> pd.DataFrame:
    """The per-epoch metrics of a run (its metrics.csv)."""
    path = study.run_dir(run) / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics for run {run!r}: {path} does not exist; train it first "
                                f"(study.train_or_load(ctx, {run!r}))")
    return pd.read_csv(path)


def run_status(action: str, record: dict | None) -> str:
    """"trained", "resumed from epoch k", or "reused (trained | resumed from epoch k)"."""
    return f"reused ({how_trained(record)})" if action == "reused" else action


def run_row(study: Study, run: str, action: str) -> dict:
    from ffcore.checkpoint import load_checkpoint_file

    payload = load_checkpoint_file(study.checkpoint_path(run))
    record = read_record(study.run_dir(run)) or {}
    history = run_history(study, run) if (study.run_dir(run) / "metrics.csv").is_file() else pd.DataFrame()
    best = payload.get("best_metric") or {}
    task = "loss_task" if "loss_task" in history else "loss"   # distillation logs its task loss apart
    row = {"run": run, "model": payload.get("model_name", model_of_run(run)), "status": run_status(action, record),
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


def save_run_table(study: Study, run: str, action: str) -> pd.DataFrame:
    table = pd.DataFrame([run_row(study, run, action)])
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
    record_checkpoint(study, run)
    return save_run_table(study, run, action)


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
    record_checkpoint(study, study_run(study, variant + NOT_FINETUNED_SUFFIX))
    record_checkpoint(study, run)
    return save_run_table(study, run, action)


def seed_runs_table(study: Study) -> pd.DataFrame:
    """V2 alone and V2 distilled from the profile's teacher for every training seed of the profile
    (trained or loaded), one row per run: the central comparison's repetitions."""
    student = study.profile.student
    tables = []
    for seed in study.profile.seeds:
        tables.append(train_or_load(study, study_run(study, student, seed)))
        tables.append(distill_or_load(study, seed=seed))
    return pd.concat(tables, ignore_index=True)


def training_curves_figure(study: Study, runs: list[str], name: str = "training_curves"):
    """Training loss (and validation AP where the recipe validated) per epoch, one line per run."""
    from ffcore.report.plotting import model_styles, new_figure, pretty_name

    histories = {run: run_history(study, run) for run in runs}
    has_ap = any("ap_hard" in h and h["ap_hard"].notna().any() for h in histories.values())
    fig, axes = new_figure(ncols=2 if has_ap else 1, aspect=0.4 if has_ap else 0.55)
    axes = axes[0] if has_ap else [axes]
    styles = model_styles(runs)
    labels = {run: pretty_name(run, teacher=teacher_display_name(study.profile)) for run in runs}
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
            record_checkpoint(study, run)
    return study.save_figure(fig, name, checkpoints=runs,
                             headline="final training task loss " + ", ".join(f"{r} {v:.3f}" for r, v in final.items()))
