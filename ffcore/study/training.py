"""Training, distillation and fine-tuning runs of a study, reused from disk unless `force`.

A run lives in results/<profile>/checkpoints/<run>/ (best.pt, last.pt, metrics.csv,
train.log). Run names say what was trained:

    featherface_v1, featherface_v1_ssh_grouped, ...     a registered model, seed 0
    featherface_v2_seed1                                the same recipe with training seed 1
    featherface_v2_distilled[_seed1]                    distilled from the profile's teacher (V1)
    featherface_v2_distilled_eca_cbam_widerface         distilled from the WIDER FACE-trained ECA-CBAM
    featherface_v2_pruned20                             pruned from the trained parent, then fine-tuned
    featherface_v2_pruned20_not_finetuned               pruned from the trained parent only

V1 and its one-part swaps train with the profile's `train_preset` for `epochs`; V2 alone,
V2 distilled (every teacher) and the V2 variants with `student_preset` for
`student_epochs`, so each comparison changes only the factor it studies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from ffcore.study.context import Study

DISTILLED_SUFFIX = "_distilled"
NOT_FINETUNED_SUFFIX = "_not_finetuned"
_SEED = re.compile(r"^(?P<base>.+)_seed(?P<seed>\d+)$")
_RUN_FILES = ("best.pt", "last.pt", "metrics.csv")
# V2's registered variants train with the student recipe (compared with V2, not with V1).
V2_VARIANTS = ("featherface_v2_ultra", "featherface_v2_vit")


@dataclass(frozen=True)
class Teacher:
    """A distillation teacher: a registered model and where its weights come from."""

    model: str
    label: str
    shared_weights: tuple[str, ...] | None = None   # path inside the shared folder; None: trained in the study

    def weights(self, study: Study) -> Path:
        if self.shared_weights is None:
            return ensure_checkpoint(study, study_run(study, self.model))
        from ffcore.paths import shared_dir

        path = shared_dir().joinpath(*self.shared_weights)
        if not path.is_file():
            raise FileNotFoundError(f"teacher weights {path} not found (the shared folder's trained "
                                    f"{self.model}); the distillation from it cannot run")
        return path


# suffix after `_distilled_` -> teacher; the profile's teacher (no suffix) is trained in notebook 01
WIDERFACE_TEACHERS: dict[str, Teacher] = {
    "eca_cbam_widerface": Teacher("featherface_eca_cbam", "ECA-CBAM FeatherFace trained on WIDER FACE",
                                  ("weights", "featherface_eca_cbam_widerface.pth")),
}


# Real detectors evaluated beside the study's runs: run name -> (model, weights in the shared folder).
REFERENCE_RUNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "retinaface_mnet025_widerface": ("retinaface_mnet025", ("weights", "retinaface_mnet025_widerface.pth")),
    "featherface_eca_cbam_widerface": ("featherface_eca_cbam", ("weights", "featherface_eca_cbam_widerface.pth")),
}
TRAINED_ON_WIDERFACE = "WIDER FACE (shared weights)"


def reference_runs() -> list[str]:
    """The WIDER FACE-trained reference detectors whose model is registered and whose weights exist."""
    from ffcore.models import list_models
    from ffcore.paths import shared_dir

    return [run for run, (model, weights) in REFERENCE_RUNS.items()
            if model in list_models() and shared_dir().joinpath(*weights).is_file()]


def trained_on(study: Study, run: str) -> str:
    """What a run's weights were trained on, for table columns and legends."""
    return TRAINED_ON_WIDERFACE if run in REFERENCE_RUNS else f"{study.dataset} ({study.profile.name} profile)"


def seeded_run(run: str, seed: int) -> str:
    """The run name for a training seed (seed 0 keeps the plain name)."""
    return run if seed == 0 else f"{run}_seed{seed}"


def study_run(study: Study, run: str, seed: int = 0) -> str:
    """The study's run of `run` (a model or distilled run name without a seed) for its `seed`-th training
    seed, shifted by the profile's `seed_offset`: `featherface_v1` with offset 100 is
    `featherface_v1_seed100`, so a run with disjoint seeds never reuses (or overwrites) another's."""
    if _SEED.match(run):
        raise ValueError(f"study_run takes a run name without a seed, got {run!r}")
    return seeded_run(run, seed + study.profile.seed_offset)


def split_seed(run: str) -> tuple[str, int]:
    match = _SEED.match(run)
    return (match["base"], int(match["seed"])) if match else (run, 0)


def model_of_run(study: Study | None, run: str) -> str:
    """Registry name of the model a run trains (`featherface_v2_distilled_seed1` -> `featherface_v2`)."""
    if run in REFERENCE_RUNS:
        return REFERENCE_RUNS[run][0]
    base, _ = split_seed(run)
    base = base.removesuffix(NOT_FINETUNED_SUFFIX)
    return base.split(DISTILLED_SUFFIX)[0] if DISTILLED_SUFFIX in base else base


def teacher_of_run(study: Study, run: str) -> Teacher | None:
    """The teacher of a distilled run (None for a supervised run)."""
    base, _ = split_seed(run)
    if DISTILLED_SUFFIX not in base:
        return None
    tag = base.split(DISTILLED_SUFFIX, 1)[1].removeprefix("_")
    if not tag:
        return Teacher(study.profile.teacher, f"{study.profile.teacher} trained in this study")
    if tag not in WIDERFACE_TEACHERS:
        raise KeyError(f"run {run!r}: unknown teacher {tag!r}; known: {', '.join(WIDERFACE_TEACHERS)}")
    return WIDERFACE_TEACHERS[tag]


def pruned_parent(model: str) -> str | None:
    """The model a registered pruned variant is cut from (None when `model` is not one)."""
    from ffcore.pruning import DEFAULT_RATIO, PRUNABLE_BASES

    parents = {f"{base}_pruned{round(DEFAULT_RATIO * 100)}": base for base in PRUNABLE_BASES}
    return parents.get(model)


def recipe(study: Study, model: str) -> tuple[str, int]:
    """(training preset, epochs) of a model in this study: the student recipe for V2 and its variants."""
    p = study.profile
    if model == p.student or model in V2_VARIANTS:
        return p.student_preset, p.student_epochs
    return p.train_preset, p.epochs


def _train_config(study: Study, run: str, preset: str, epochs: int):
    from ffcore.engine.config import get_preset

    p = study.profile
    if split_seed(run)[1] < p.seed_offset:
        raise ValueError(f"run {run!r} has training seed {split_seed(run)[1]}, below the profile's seed_offset "
                         f"{p.seed_offset}: name the run with study_run(study, {split_seed(run)[0]!r}) so its seed "
                         "is shifted like every other run's")
    config = get_preset(preset, model=model_of_run(study, run), data_root=str(study.data_root),
                        out_dir=str(study.run_dir(run)), epochs=epochs, image_size=p.image_size,
                        batch_size=p.batch_size, device=study.device, seed=p.seed + split_seed(run)[1],
                        workers=p.workers, progress=False, tensorboard=False,
                        max_steps_per_epoch=p.max_steps_per_epoch)
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
    """The run's best.pt, training (distilling, pruning) it first when it does not exist. Never retrains.
    A reference run's checkpoint is its shared WIDER FACE weights file."""
    if run in REFERENCE_RUNS:
        from ffcore.checkpoint import file_sha256
        from ffcore.paths import shared_dir

        path = shared_dir().joinpath(*REFERENCE_RUNS[run][1])
        if not path.is_file():
            raise FileNotFoundError(f"{run}: the shared weights {path} are missing")
        study.used_checkpoints[run] = file_sha256(path)
        return path
    if not study.checkpoint_path(run).is_file():
        if teacher_of_run(study, run) is not None:
            distill_or_load(study, run=run, force=False)
        elif pruned_parent(model_of_run(study, run)) is not None:
            finetune_pruned_or_load(study, model_of_run(study, run), force=False)
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


def train_or_load(study: Study, run: str, force: bool | None = None) -> pd.DataFrame:
    """Train a registered model with its recipe in the profile (`recipe`), or reuse
    results/<profile>/checkpoints/<run>/best.pt. `<model>_seed<N>` trains with seed N."""
    from ffcore.engine.train import train

    force = study.force if force is None else force
    status = "loaded (checkpoint exists)"
    if _needs_training(study, run, force):
        _clear_run(study, run)
        preset, epochs = recipe(study, model_of_run(study, run))
        with study.progress.step(run, epochs):
            train(_train_config(study, run, preset, epochs)).raise_for_status()
        status = "trained"
    _record(study, run)
    return _save_run_table(study, run, status)


def distill_or_load(study: Study, teacher: str | None = None, student: str | None = None,
                    force: bool | None = None, seed: int = 0, run: str | None = None) -> pd.DataFrame:
    """Distil a teacher into the student with the student recipe (the one V2 alone trains with), or reuse
    the checkpoint. Default: the profile's teacher, trained first if missing. `run` names another
    teacher (`featherface_v2_distilled_eca_cbam_widerface`) and/or a seed (`..._seed1`)."""
    from ffcore.engine.distill import DistillConfig, distill

    if run is None:
        student = student or study.profile.student
        if teacher not in (None, study.profile.teacher):
            raise ValueError(f"teacher {teacher!r}: name a teacher other than the profile's through run="
                             f"'{student}{DISTILLED_SUFFIX}_<tag>' with a tag of {', '.join(WIDERFACE_TEACHERS)}")
        run = study_run(study, student + DISTILLED_SUFFIX, seed)
    source = teacher_of_run(study, run)
    if source is None:
        raise ValueError(f"run {run!r} is not a distillation run (no {DISTILLED_SUFFIX!r} in its name)")
    force = study.force if force is None else force
    status = "loaded (checkpoint exists)"
    if _needs_training(study, run, force):
        teacher_weights = source.weights(study)   # a study teacher is reused, never retrained here
        _clear_run(study, run)
        preset, epochs = recipe(study, model_of_run(study, run))
        config = _train_config(study, run, preset, epochs)
        with study.progress.step(run, epochs):
            distill(config, DistillConfig(teacher=source.model, teacher_weights=str(teacher_weights))
                    ).raise_for_status()
        status = "distilled"
    _record(study, run)
    return _save_run_table(study, run, status)


def widerface_teacher_table(study: Study) -> pd.DataFrame:
    """Distil V2 from each WIDER FACE-trained teacher the profile chooses (`widerface_teachers`),
    or reuse the checkpoints: one row per run. A profile that chooses none gets an empty table
    that says so, rather than a training the time budget has no room for."""
    runs = widerface_teacher_runs(study)
    if not runs:
        chosen = study.profile.widerface_teachers
        why = ("the profile's widerface_teachers is empty" if chosen is not None
               else "no WIDER FACE-trained teacher's model and weights are available")
        return pd.DataFrame([{"run": "none", "status": f"not trained: {why}"}])
    return pd.concat([distill_or_load(study, run=run) for run in runs], ignore_index=True)


def distillation_runs(study: Study) -> list[str]:
    """V2 alone, V2 distilled from the profile's teacher (seed 0), then from each WIDER FACE teacher trained."""
    student = study.profile.student
    return [study_run(study, student), study_run(study, student + DISTILLED_SUFFIX), *widerface_teacher_runs(study)]


def finetune_pruned_or_load(study: Study, variant: str, force: bool | None = None) -> pd.DataFrame:
    """Prune the trained parent of `variant` (L1, `ffcore.pruning`), keep that model as
    `<variant>_not_finetuned`, then fine-tune it for the profile's `finetune_epochs` with the
    parent's recipe at a tenth of its learning rate. Reuses both checkpoints unless `force`."""
    from ffcore.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
    from ffcore.engine.distributed import setup_distributed, teardown_distributed
    from ffcore.engine.train import DetectionTask, multibox_loss_for
    from ffcore.engine.trainer import Trainer
    from ffcore.models import load_pretrained
    from ffcore.pruning import DEFAULT_RATIO, prune_context

    parent = pruned_parent(variant)
    if parent is None:
        raise ValueError(f"{variant!r} is not a registered pruned variant")
    force = study.force if force is None else force
    model = variant
    parent, variant, before = (study_run(study, name) for name in (parent, variant, variant + NOT_FINETUNED_SUFFIX))
    status = "loaded (checkpoint exists)"
    if _needs_training(study, variant, force) or _needs_training(study, before, force):
        parent_checkpoint = ensure_checkpoint(study, parent)
        pruned = prune_context(load_pretrained(model_of_run(study, parent), parent_checkpoint), DEFAULT_RATIO)
        pruned.name = model
        for run in (before, variant):
            _clear_run(study, run)
        study.run_dir(before).mkdir(parents=True, exist_ok=True)
        save_checkpoint(study.checkpoint_path(before),
                        {"format": CHECKPOINT_FORMAT, "model_name": model,
                         "model_overrides": dict(getattr(pruned, "overrides", {})), "state_dict": pruned.state_dict(),
                         "kind": "pruned", "epoch": 0, "parent": parent, "parent_checkpoint": str(parent_checkpoint)})
        preset, _ = recipe(study, parent)
        config = _train_config(study, variant, preset, study.profile.finetune_epochs)
        config = replace(config, lr=config.lr / 10, pretrained_backbone=False)
        context = setup_distributed(config.device)
        try:
            with study.progress.step(variant, config.epochs):
                Trainer(config, DetectionTask(pruned.train(), multibox_loss_for(pruned, config)), context,
                        kind="finetune").run().raise_for_status()
        finally:
            teardown_distributed(context)
        status = "pruned and fine-tuned"
    _record(study, before)
    _record(study, variant)
    return _save_run_table(study, variant, status)


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


def study_pruned_variants(study: Study) -> list[str]:
    """Registered pruned variants whose parent this study trains (V1, V2)."""
    from ffcore.models import list_models

    trained = {study.profile.teacher, study.profile.student}
    return [m for m in list_models() if pruned_parent(m) in trained]


def widerface_teacher_runs(study: Study) -> list[str]:
    """Distillation runs from the WIDER FACE-trained teachers whose model and weights are available."""
    from ffcore.models import list_models
    from ffcore.paths import shared_dir

    chosen = study.profile.chosen("widerface_teachers", list(WIDERFACE_TEACHERS))
    return [study_run(study, study.profile.student + DISTILLED_SUFFIX + "_" + tag) for tag in chosen
            if WIDERFACE_TEACHERS[tag].model in list_models()
            and shared_dir().joinpath(*WIDERFACE_TEACHERS[tag].shared_weights).is_file()]


def planned_runs(study: Study) -> list[str]:
    """Every training of a whole run of the five notebooks, in the order they happen."""
    from ffcore.study.ablations import study_swaps, study_v2_variants

    p = study.profile
    runs = [study_run(study, p.teacher)]
    runs += [study_run(study, p.student, seed) for seed in p.seeds]
    runs += [study_run(study, p.student + DISTILLED_SUFFIX, seed) for seed in p.seeds]
    runs += widerface_teacher_runs(study)
    runs += [study_run(study, model) for model in (*study_swaps(study), *study_v2_variants(study),
                                                   *study_pruned_variants(study))]
    return runs


def seed_runs_table(study: Study) -> pd.DataFrame:
    """V2 alone and V2 distilled from the profile's teacher for every training seed of the profile
    (trained or loaded), one row per run: the central comparison's repetitions."""
    student = study.profile.student
    tables = []
    for seed in study.profile.seeds:
        tables.append(train_or_load(study, study_run(study, student, seed)))
        tables.append(distill_or_load(study, seed=seed))
    return pd.concat(tables, ignore_index=True)
