"""Training and distillation runs of a study, reused from disk unless `force`.

A run lives in results/<profile>/checkpoints/<run>/ (best.pt, last.pt, metrics.csv,
train.log). The run name is the registry name of the model, except for the distilled
student, `<student>_distilled`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from ffcore.study.context import Study

DISTILLED_SUFFIX = "_distilled"
_RUN_FILES = ("best.pt", "last.pt", "metrics.csv")


def model_of_run(study: Study, run: str) -> str:
    """Registry name of the model a run trains (`featherface_v2_distilled` -> `featherface_v2`)."""
    return run[: -len(DISTILLED_SUFFIX)] if run.endswith(DISTILLED_SUFFIX) else run


def _train_config(study: Study, run: str, preset: str, epochs: int):
    from ffcore.engine.config import get_preset

    p = study.profile
    config = get_preset(preset, model=model_of_run(study, run), data_root=str(study.data_root),
                        out_dir=str(study.run_dir(run)), epochs=epochs, image_size=p.image_size,
                        batch_size=p.batch_size, device=study.device, seed=p.seed, workers=p.workers,
                        progress=False, tensorboard=False, max_steps_per_epoch=p.max_steps_per_epoch)
    if not _has_imagenet_backbone(config.model):
        # e.g. the ViT variant: no ImageNet file fits its backbone, it trains from scratch
        config = replace(config, pretrained_backbone=False)
    if p.val_every is not None:
        config = replace(config, val_every=p.val_every)
    if config.val_every <= 0 and config.best_metric != "loss":
        # no validation during training: keep the checkpoint with the lowest training loss
        config = replace(config, best_metric="loss")
    return config


def _has_imagenet_backbone(model_name: str) -> bool:
    """Whether the model's backbone is the MobileNet-0.25 that the ImageNet file initialises."""
    from ffcore.models import create_model
    from ffcore.models.backbone import BACKBONES

    return type(getattr(create_model(model_name), "backbone", None)) in tuple(BACKBONES.values())


def _clear_run(study: Study, run: str) -> None:
    """Remove a previous run's checkpoints and metrics before retraining (force), so nothing stale survives."""
    for name in _RUN_FILES:
        path = study.run_dir(run) / name
        if path.exists():
            path.unlink()


def _record(study: Study, run: str) -> Path:
    from ffcore.checkpoint import file_sha256

    path = study.checkpoint_path(run)
    study.used_checkpoints[run] = file_sha256(path)
    return path


def _needs_training(study: Study, run: str, force: bool) -> bool:
    return force or not study.checkpoint_path(run).is_file()


def ensure_checkpoint(study: Study, run: str) -> Path:
    """The run's best.pt, training (or distilling) it first when it does not exist. Never retrains."""
    if not study.checkpoint_path(run).is_file():
        if run.endswith(DISTILLED_SUFFIX):
            distill_or_load(study, student=model_of_run(study, run), force=False)
        else:
            train_or_load(study, run, force=False)
    return _record(study, run)


def run_history(study: Study, run: str) -> pd.DataFrame:
    """The per-epoch metrics of a run (its metrics.csv)."""
    path = study.run_dir(run) / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics for run {run!r}: {path} does not exist; train it first "
                                f"(study.train_or_load(ctx, {run!r}))")
    return pd.read_csv(path)


def _run_row(study: Study, run: str, status: str) -> dict:
    from ffcore.checkpoint import load_checkpoint_file

    payload = load_checkpoint_file(study.checkpoint_path(run))
    history = run_history(study, run) if (study.run_dir(run) / "metrics.csv").is_file() else pd.DataFrame()
    best = payload.get("best_metric") or {}
    task = "loss_task" if "loss_task" in history else "loss"   # distillation logs its task loss apart
    row = {"run": run, "model": payload.get("model_name", model_of_run(study, run)), "status": status,
           "kind": payload.get("kind", "train"), "best epoch": payload.get("epoch"),
           "epochs run": int(history["epoch"].max()) if "epoch" in history else None,
           "final task loss": round(float(history[task].iloc[-1]), 4) if task in history else None,
           "best metric": f"{best.get('name')} = {best.get('value'):.4g}" if best.get("value") is not None else "",
           "train time s": round(float(history["wall_time_s"].iloc[-1]), 1) if "wall_time_s" in history else None,
           "checkpoint": study.used_checkpoints.get(run, "")}
    if payload.get("teacher_name"):
        row["teacher"] = f"{payload['teacher_name']}@{payload.get('teacher_sha256', '?')}"
    return row


def _save_run_table(study: Study, run: str, status: str) -> pd.DataFrame:
    table = pd.DataFrame([_run_row(study, run, status)])
    row = table.iloc[0]
    study.save_table(table, f"training_{run}", caption=f"Training run {run}", checkpoints=[run],
                     headline=f"{run}: {row['epochs run']} epochs, final training task loss {row['final task loss']}")
    return table


def train_or_load(study: Study, run: str, force: bool | None = None, epochs: int | None = None) -> pd.DataFrame:
    """Train a registered model with the profile's recipe, or reuse results/<profile>/checkpoints/<run>/best.pt.

    `epochs` defaults to the profile's main training length (ablations pass theirs)."""
    from ffcore.engine.train import train

    force = study.force if force is None else force
    status = "loaded (checkpoint exists)"
    if _needs_training(study, run, force):
        _clear_run(study, run)
        config = _train_config(study, run, study.profile.train_preset, epochs or study.profile.epochs)
        train(config).raise_for_status()
        status = "trained"
    _record(study, run)
    return _save_run_table(study, run, status)


def distill_or_load(study: Study, teacher: str | None = None, student: str | None = None,
                    force: bool | None = None) -> pd.DataFrame:
    """Distil the profile's teacher (trained first if missing) into the student, or reuse the checkpoint."""
    from ffcore.engine.distill import DistillConfig, distill

    teacher = teacher or study.profile.teacher
    student = student or study.profile.student
    run = student + DISTILLED_SUFFIX
    force = study.force if force is None else force
    status = "loaded (checkpoint exists)"
    if _needs_training(study, run, force):
        teacher_checkpoint = ensure_checkpoint(study, teacher)   # the teacher is reused, never retrained here
        _clear_run(study, run)
        config = _train_config(study, run, study.profile.distill_preset, study.profile.distill_epochs)
        distill(config, DistillConfig(teacher=model_of_run(study, teacher),
                                      teacher_weights=str(teacher_checkpoint))).raise_for_status()
        status = "distilled"
    _record(study, run)
    return _save_run_table(study, run, status)


def training_curves_figure(study: Study, runs: list[str], name: str = "training_curves"):
    """Training loss (and validation AP where the recipe validated) per epoch, one line per run."""
    from ffcore.plotting import model_style, new_figure, pretty_name

    histories = {run: run_history(study, run) for run in runs}
    has_ap = any("ap_hard" in h and h["ap_hard"].notna().any() for h in histories.values())
    fig, axes = new_figure(ncols=2 if has_ap else 1, aspect=0.4 if has_ap else 0.55)
    axes = axes[0] if has_ap else [axes]
    for index, (run, history) in enumerate(histories.items()):
        style = model_style(run, index)
        # the task loss is comparable across runs; a distillation run's total objective is not
        task = "loss_task" if "loss_task" in history else "loss"
        axes[0].plot(history["epoch"], history[task], label=pretty_name(run), color=style["color"],
                     marker=style["marker"], markevery=max(1, len(history) // 10))
        if task != "loss":
            axes[0].plot(history["epoch"], history["loss"], color=style["color"], linestyle="--",
                         label=f"{pretty_name(run)}: distillation objective")
        if has_ap and "ap_hard" in history:
            valid = history.dropna(subset=["ap_hard"])
            for setting, dash in (("easy", ":"), ("medium", "--"), ("hard", "-")):
                axes[1].plot(valid["epoch"], 100 * valid[f"ap_{setting}"], linestyle=dash, color=style["color"],
                             marker=style["marker"], label=f"{pretty_name(run)} {setting}")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("training task loss (2·box + class + landmark)")
    axes[0].legend()
    if has_ap:
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("validation AP (%)")
        axes[1].legend(fontsize=6, ncol=2)
    final = {run: float(h["loss_task" if "loss_task" in h else "loss"].iloc[-1]) for run, h in histories.items()}
    for run in runs:
        if study.checkpoint_path(run).is_file():
            _record(study, run)
    return study.save_figure(fig, name, checkpoints=runs,
                             headline="final training task loss " + ", ".join(f"{r} {v:.3f}" for r, v in final.items()))
