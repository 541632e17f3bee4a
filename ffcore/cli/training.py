"""`ffcore train` and `ffcore distill`: a preset recipe, a recipe file and command-line overrides.

Every field of `TrainConfig` (and, for `distill`, of `DistillConfig`) is an option, generated
from the dataclass by `ffcore.cli.recipe`; `TRAIN_FIELDS` / `DISTILL_FIELDS` only add help,
choices and the few flags that differ from the field's name. The recipe is resolved as

    preset (--preset, or the file's `preset`)  <  --config file  <  command-line options

(on --resume the recipe saved in <out>/last.pt replaces the preset), and written to
<out>/run.yaml before training starts, so `--config <out>/run.yaml` repeats the run.
`ffcore.engine.config` is torch-free: the options and the preset choices are built without
importing torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from ffcore.cli.common import MODEL_HELP, CommandError, registered_model
from ffcore.cli.recipe import FieldOption, add_field_options, coerce_fields, read_recipe_file, write_recipe_file

# Exit code of a run that stopped on a non-finite loss or an unreadable image (the last good
# checkpoint is kept).
EXIT_STOPPED = 3
RECIPE_FILE = "run.yaml"
DEFAULT_TRAIN_PRESET = "featherface_paper"
DEFAULT_DISTILL_PRESET = "v2_thesis"       # both the training preset and the distillation preset of `distill`
DEFAULT_STUDENT = "featherface_v2"         # `distill`'s model unless --student (or the file's `model`) says otherwise


def parse_pretrained_backbone(text: str) -> bool | str:
    """`--pretrained-backbone`: 'none' (also 'false', 'no') for a random initialisation, 'auto' (also
    'true') for the ImageNet file found automatically, else a file."""
    if text.lower() in ("none", "false", "no"):
        return False
    if text.lower() in ("auto", "true"):
        return True
    return text


def _train_fields() -> dict[str, FieldOption]:
    from ffcore.engine.config import BEST_METRICS, OPTIMIZERS, SCHEDULES

    return {
        "model": FieldOption(MODEL_HELP + " (default: the preset's)", parse=registered_model),
        "model_overrides": FieldOption("detector config fields to change, e.g. neck_channels=48"),
        "pretrained_backbone": FieldOption("ImageNet MobileNet-0.25 file, 'auto' (found in weights/ or the shared "
                                           "folder) or 'none'", parse=parse_pretrained_backbone, metavar="FILE"),
        "data_root": FieldOption("WIDER-format dataset root (default data/widerface)", flag="--data", metavar="DIR"),
        "val_root": FieldOption("root with WIDER_val and the evaluation .mat files (default: --data)",
                                flag="--val-data", metavar="DIR"),
        "batch_size": FieldOption("per process (global = this x world size)"),
        "workers": FieldOption("data loader processes"),
        "mixup_prob": FieldOption("share of samples mixed with MixUp (lam-weighted)"),
        "mixup_alpha": FieldOption("MixUp's Beta(alpha, alpha)"),
        "cutmix_prob": FieldOption("share of samples mixed with CutMix"),
        "optimizer": FieldOption(choices=OPTIMIZERS),
        "momentum": FieldOption("SGD only"),
        "schedule": FieldOption("learning-rate schedule", choices=SCHEDULES),
        "warmup_epochs": FieldOption("warm-up length (warmup_cosine, step)"),
        "min_lr": FieldOption("final learning rate (warmup_cosine, cosine_restarts)"),
        "onecycle_pct_start": FieldOption("share of the run rising to --lr (onecycle)"),
        "step_milestones": FieldOption("epochs where the lr is multiplied by --step-gamma (step)", metavar="EPOCH"),
        "step_gamma": FieldOption("lr factor at each milestone (step)"),
        "grad_clip_norm": FieldOption("clip the gradient norm to this ('none': no clipping); the cure of a "
                                      "diverging loss"),
        "loc_weight": FieldOption("weight of the box regression loss"),
        "overlap_threshold": FieldOption("IoU at which a prior matches a face"),
        "restart_epochs": FieldOption("epochs per cosine cycle (cosine_restarts; 'none': the whole run)"),
        "decay_all_parameters": FieldOption("weight decay on every parameter (--no-decay-all-parameters: not on "
                                            "biases and norm weights)"),
        "out_dir": FieldOption("run folder (checkpoints, logs, run.yaml)", flag="--out", metavar="DIR"),
        "device": FieldOption("cpu | cuda | cuda:N (default: cuda when available)"),
        "amp": FieldOption("float16 mixed precision on CUDA (recorded as the run's precision)"),
        "cudnn_benchmark": FieldOption("cuDNN autotuning of each convolution shape (CUDA only)"),
        "sync_batchnorm": FieldOption("synchronised batch norm (DDP only)"),
        "val_every": FieldOption("epochs between validations (0: never)"),
        "val_batch_size": FieldOption("validation images of one size per forward pass (1: one by one)"),
        "val_scale": FieldOption("validation scale: origin | vga | <long side in pixels>", metavar="SCALE"),
        "best_metric": FieldOption("what best.pt is chosen by", choices=BEST_METRICS),
        "progress": FieldOption("progress bar"),
        "tensorboard": FieldOption("TensorBoard scalars"),
        "log_every_steps": FieldOption("also log running losses every N steps (0: per epoch only)"),
        "max_steps_per_epoch": FieldOption("cap steps per epoch (quick checks; 'none': the whole dataset)"),
        "stop_after_epoch": FieldOption("end this invocation after this epoch (time-boxed jobs; --resume later)"),
        "skip_unreadable_images": FieldOption("skip a missing or undecodable training image (logged and counted) "
                                              "instead of stopping"),
    }


def _distill_fields() -> dict[str, FieldOption]:
    return {
        "teacher": FieldOption("teacher model name (featherface_v1, retinaface_mnet025, ...)", parse=registered_model,
                               metavar="MODEL"),
        "teacher_weights": FieldOption("teacher checkpoint", metavar="FILE"),
        "temperature": FieldOption("softening temperature T"),
        "alpha": FieldOption("weight of the KD term"),
        "feature_weight": FieldOption("weight of the feature MSE"),
        "progressive": FieldOption("progressive distillation: feature levels P5, then P4-P5, then P3-P5"),
        "stage_boundaries": FieldOption("progressive: fractions of the run where stages 2 and 3 begin",
                                        metavar="FRACTION"),
    }


def _add_recipe_options(p: argparse.ArgumentParser, default_preset: str) -> None:
    from ffcore.engine.config import preset_names

    p.add_argument("--preset", choices=preset_names(), default=None,
                   help=f"training recipe the other options change (default: the file's, else {default_preset})")
    p.add_argument("--config", default=None, metavar="FILE",
                   help=f"YAML recipe: TrainConfig fields (a {RECIPE_FILE} written by a run repeats it); "
                        "command-line options override it")
    p.add_argument("--resume", action="store_true", help="continue exactly from <out>/last.pt with its saved recipe")


def add_train(sub) -> None:
    from ffcore.engine.config import TrainConfig

    p = sub.add_parser("train", help="train a detector (resumable; torchrun for multi-GPU)",
                       description="Train a registered model on a WIDER-format dataset: a preset recipe, an "
                                   "optional recipe file and command-line options, one per TrainConfig field. "
                                   "Writes run.yaml (the resolved recipe), last.pt (every epoch), best.pt, "
                                   "metrics.csv, train.log and TensorBoard scalars to --out. Launch with torchrun "
                                   "(--nproc_per_node=N -m ffcore train ...) for DDP.")
    _add_recipe_options(p, DEFAULT_TRAIN_PRESET)
    add_field_options(p.add_argument_group("recipe (TrainConfig fields; default: the preset's)"), TrainConfig,
                      _train_fields())
    p.set_defaults(handler=train_command)


def add_distill(sub) -> None:
    from ffcore.engine.config import DISTILL_PRESETS, DistillConfig, TrainConfig

    p = sub.add_parser("distill", help="knowledge distillation teacher -> featherface_v2",
                       description="Train a student (default featherface_v2) with (1-a)*task + a*T^2*KL + "
                                   "lambda*MSE(features) from a frozen teacher. Same outputs as `train`; "
                                   "feature adapters are saved apart from the student's weights. The recipe file "
                                   "holds TrainConfig and DistillConfig fields.")
    _add_recipe_options(p, DEFAULT_DISTILL_PRESET)
    p.add_argument("--distill-preset", choices=sorted(DISTILL_PRESETS), default=None,
                   help=f"distillation settings the options below change (default {DEFAULT_DISTILL_PRESET})")
    add_field_options(p.add_argument_group("distillation (DistillConfig fields; default: the distillation preset's)"),
                      DistillConfig, _distill_fields())
    train_fields = _train_fields()
    train_fields["model"] = FieldOption(f"student model (default {DEFAULT_STUDENT})", flag="--student",
                                        parse=registered_model, metavar="MODEL")
    add_field_options(p.add_argument_group("recipe (TrainConfig fields; default: the preset's)"), TrainConfig,
                      train_fields)
    p.set_defaults(handler=distill_command)


def _saved_checkpoint_field(out: str, key: str) -> dict | None:
    """The `key` entry of `<out>/last.pt` (a saved recipe), or None when there is no such file."""
    from ffcore.engine.trainer import LAST_CHECKPOINT

    last = Path(out) / LAST_CHECKPOINT
    if not last.is_file():
        return None
    from ffcore.checkpoint import load_checkpoint_file

    return load_checkpoint_file(last)[key]


def _split(values: dict[str, Any], cls) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def _replace(base, values: dict[str, Any], what: str):
    try:
        return replace(base, **values)
    except (TypeError, ValueError) as exc:       # a dataclass's own check (DistillConfig.stage_boundaries)
        raise CommandError(f"{what}: {exc}") from None


def resolve_recipe(options: dict[str, Any], config_file: str | None, preset: str | None, resume: bool,
                   default_preset: str, distill: bool = False):
    """(TrainConfig, DistillConfig or None, preset name) from the command line's field values
    `options`, an optional recipe file and the preset (or the recipe saved in <out>/last.pt)."""
    from ffcore.engine.config import (DISTILL_PRESETS, TRAINING_PRESETS, DistillConfig, TrainConfig, get_preset,
                                      recipe_differences)

    allowed = [f.name for f in fields(TrainConfig)] + ["preset"]
    if distill:
        allowed += [f.name for f in fields(DistillConfig)] + ["distill_preset"]
    from_file = read_recipe_file(config_file, allowed) if config_file else {}
    preset = preset or from_file.pop("preset", None) or default_preset
    from_file.pop("preset", None)
    if preset not in TRAINING_PRESETS:
        raise CommandError(f"{config_file}: unknown training preset {preset!r}; presets: "
                           f"{', '.join(sorted(TRAINING_PRESETS))}")
    distill_preset = (options.pop("distill_preset", None) or from_file.pop("distill_preset", None)
                      or DEFAULT_DISTILL_PRESET)
    from_file.pop("distill_preset", None)
    if distill and distill_preset not in DISTILL_PRESETS:
        raise CommandError(f"{config_file}: unknown distillation preset {distill_preset!r}; presets: "
                           f"{', '.join(sorted(DISTILL_PRESETS))}")

    def given(values: dict[str, Any], where) -> tuple[dict, dict]:
        return (coerce_fields(_split(values, TrainConfig), TrainConfig, where),
                coerce_fields(_split(values, DistillConfig), DistillConfig, where) if distill else {})

    file_train, file_distill = given(from_file, lambda key: f"{config_file}: {key}")
    cli_train, cli_distill = given(options, lambda key: "--" + key.replace("_", "-"))
    train_values = {**file_train, **cli_train}
    if distill and not resume:
        train_values.setdefault("model", DEFAULT_STUDENT)
    out = train_values.get("out_dir")
    if out is None:
        raise CommandError("no run folder: pass --out DIR (or out_dir in the --config file)")
    saved = _saved_checkpoint_field(out, "train_config") if resume else None
    base = TrainConfig.from_dict(saved) if saved is not None else get_preset(preset)
    config = _replace(base, train_values, "training recipe")
    if saved is not None:
        # refused here, before run.yaml is rewritten, rather than by the trainer after it
        diffs = recipe_differences(base, config)
        if diffs:
            listed = ", ".join(f"{k}: saved {a!r} vs requested {b!r}" for k, (a, b) in diffs.items())
            raise CommandError(f"cannot resume {out}: the recipe differs ({listed}); resume with the saved "
                               f"settings or start a new run in another folder")
    if not distill:
        return config, None, preset
    saved = _saved_checkpoint_field(out, "distill_config") if resume else None
    base = DistillConfig.from_dict(saved) if saved is not None else DISTILL_PRESETS[distill_preset]
    distillation = _replace(base, {**file_distill, **cli_distill}, "distillation settings")
    if not distillation.teacher_weights:
        raise CommandError("no teacher checkpoint: pass --teacher-weights FILE (or teacher_weights in --config)")
    return config, distillation, preset


def save_recipe(config, distillation, preset: str, command: str) -> Path | None:
    """<out>/run.yaml: the resolved recipe, every field (rank 0 only under torchrun)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    values = {"preset": preset, **config.to_dict()}
    if distillation is not None:
        values.update(distillation.to_dict())
    return write_recipe_file(Path(config.out_dir) / RECIPE_FILE, values,
                             f"ffcore {command}: the resolved recipe of this run (every field). Repeat it with\n"
                             f"ffcore {command} --config {Path(config.out_dir) / RECIPE_FILE} --out <new folder>")


def report(result) -> int:
    """Print a run's outcome (rank 0 only under torchrun); 0 on success, EXIT_STOPPED otherwise."""
    if int(os.environ.get("RANK", "0")) != 0:     # under torchrun only rank 0 reports
        return 0 if result.ok else EXIT_STOPPED
    if not result.ok:
        print(f"error: {result.message}", file=sys.stderr)
        return EXIT_STOPPED
    print(f"done: {result.epochs_completed} epochs; last {result.last_checkpoint}; best {result.best_checkpoint}; "
          f"metrics {result.metrics_csv}" + (f"; AP {result.final_ap}" if result.final_ap else ""))
    return 0


def train_command(preset: str | None = None, config: str | None = None, resume: bool = False, **options) -> int:
    """`ffcore train`: `options` are the TrainConfig fields given on the command line. Returns 0 on
    success, 3 when the run stopped (diverged loss or unreadable image; the last good checkpoint is kept)."""
    recipe, _, preset = resolve_recipe(options, config, preset, resume, DEFAULT_TRAIN_PRESET)
    import logging

    from ffcore.engine.supervised import train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    save_recipe(recipe, None, preset, "train")
    return report(train(recipe, resume=resume))


def distill_command(preset: str | None = None, config: str | None = None, resume: bool = False, **options) -> int:
    """`ffcore distill`: `options` are the TrainConfig and DistillConfig fields given (and
    `distill_preset`). Returns 0 on success, 3 when the run stopped."""
    recipe, distillation, preset = resolve_recipe(options, config, preset, resume, DEFAULT_DISTILL_PRESET,
                                                  distill=True)
    import logging

    from ffcore.engine.distill import distill

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    save_recipe(recipe, distillation, preset, "distill")
    return report(distill(recipe, distillation, resume=resume))
