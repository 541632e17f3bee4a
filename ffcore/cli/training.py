"""`ffcore train` and `ffcore distill`: a preset recipe with command-line overrides.

Every training option overrides one field of the preset's `TrainConfig`, and is declared
once, in `TRAINING_OPTIONS` (both commands) or `TRAIN_ONLY_OPTIONS`: the option's
destination is the field's name, its value is converted to the type the dataclass declares
for the field, and the handler applies the given ones with `dataclasses.replace`. The type is
looked up when an option is given, not when the parser is built: the engine imports torch,
and `ffcore train --help` must not.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ffcore.cli.common import MODEL_HELP, registered_model
from ffcore.data.ground_truth import SETTINGS

# Exit code of a run that stopped on a non-finite loss or an unreadable image (the last good
# checkpoint is kept).
EXIT_STOPPED = 3


def parse_val_scale(text: str) -> str | int:
    """`--val-scale`: a long side in pixels (digits) or a scale name (origin, vga)."""
    return int(text) if text.isdigit() else text


def parse_pretrained_backbone(text: str) -> bool | str:
    """`--pretrained-backbone`: 'none' (also 'false', 'no') for a random initialisation, else a file."""
    return False if text.lower() in ("none", "false", "no") else text


@dataclass(frozen=True)
class TrainingOption:
    """A command-line option that overrides the `TrainConfig` field `field`."""
    field: str
    help: str | None = None
    flag: str | None = None                     # default: --<field with dashes>
    choices: tuple[str, ...] | None = None
    parse: Callable[[str], Any] | None = None   # default: the field's declared type (int, float or str)
    switch: bool = False                        # a bool field: the flag sets True, absent leaves the preset's
    off_flag: str | None = None                 # a switch's opposite flag, setting False
    off_help: str | None = None

    @property
    def option(self) -> str:
        return self.flag or "--" + self.field.replace("_", "-")


class FieldType:
    """argparse type of a training option: the type `TrainConfig` declares for the field.

    Resolved on the first value given, so building the parser imports no engine code."""

    def __init__(self, field: str):
        self.field = field
        self.__name__ = field          # argparse names it in "invalid <name> value" errors

    def target(self) -> type:
        from ffcore.engine.config import TrainConfig

        hint = typing.get_type_hints(TrainConfig)[self.field]
        kinds = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
        if len(kinds) != 1 or kinds[0] not in (int, float, str):
            raise LookupError(f"TrainConfig.{self.field} is declared {hint}: give its TrainingOption a `parse`")
        return kinds[0]

    def __call__(self, text: str):
        return self.target()(text)


# Options of both `train` and `distill`, in the order `--help` lists them.
TRAINING_OPTIONS: tuple[TrainingOption, ...] = (
    TrainingOption("data_root", "WIDER-format dataset root (default data/widerface)", flag="--data"),
    TrainingOption("val_root", "root with WIDER_val and the evaluation .mat files (default: --data)",
                   flag="--val-data"),
    TrainingOption("epochs"),
    TrainingOption("batch_size", "per process (global = this x world size)"),
    TrainingOption("lr"),
    TrainingOption("image_size"),
    TrainingOption("workers"),
    TrainingOption("seed"),
    TrainingOption("device", "cpu | cuda (default: cuda when available)"),
    TrainingOption("val_every", "epochs between validations (0: never)"),
    TrainingOption("val_scale", "validation scale: origin | vga | <long side in pixels>", parse=parse_val_scale),
    TrainingOption("best_metric", "what best.pt is chosen by", choices=(*SETTINGS, "loss")),
    TrainingOption("amp", "float16 mixed precision on CUDA (recorded as the run's precision in metrics and "
                          "checkpoints)", switch=True, off_flag="--no-amp",
                   off_help="train in FP32 (the presets' default)"),
    TrainingOption("max_steps_per_epoch", "cap steps per epoch (quick checks)"),
    TrainingOption("skip_unreadable_images", "skip a missing or undecodable training image (logged and counted) "
                                             "instead of stopping", switch=True),
)

# Options of `train` only (distillation keeps the preset's regularisation and initialisation).
TRAIN_ONLY_OPTIONS: tuple[TrainingOption, ...] = (
    TrainingOption("weight_decay"),
    TrainingOption("mixup_prob", "share of samples mixed with MixUp (lam-weighted)"),
    TrainingOption("cutmix_prob", "share of samples mixed with CutMix"),
    TrainingOption("pretrained_backbone", "ImageNet MobileNet-0.25 file, or 'none' (default: found automatically)",
                   parse=parse_pretrained_backbone),
)

RESUME_HELP = "continue exactly from <out>/last.pt with its saved recipe"


def add_training_options(parser: argparse.ArgumentParser, options: tuple[TrainingOption, ...]) -> None:
    """One argparse option per `TrainingOption`; its destination is the field, its default None (the preset's)."""
    for opt in options:
        if opt.switch:
            if opt.off_flag:
                parser.add_argument(opt.off_flag, dest=opt.field, action="store_const", const=False, default=None,
                                    help=opt.off_help)
            parser.add_argument(opt.option, dest=opt.field, action="store_const", const=True, default=None,
                                help=opt.help)
        else:
            metavar = opt.option.lstrip("-").replace("-", "_").upper()
            parser.add_argument(opt.option, dest=opt.field, default=None, metavar=None if opt.choices else metavar,
                                type=opt.parse or FieldType(opt.field), choices=opt.choices, help=opt.help)


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a detector (resumable; torchrun for multi-GPU)",
                       description="Train a registered model on a WIDER-format dataset: a preset recipe with "
                                   "command-line overrides. Writes last.pt (every epoch), best.pt, metrics.csv, "
                                   "train.log and TensorBoard scalars to --out. Launch with torchrun "
                                   "(--nproc_per_node=N -m ffcore train ...) for DDP.")
    p.add_argument("--model", default=None, type=registered_model, help=MODEL_HELP + " (default: the preset's)")
    p.add_argument("--preset", default="featherface_paper",
                   help="training recipe: featherface_paper | v2_thesis | retinaface_paper | smoke | synthetic_cpu")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs)")
    p.add_argument("--resume", action="store_true", help=RESUME_HELP)
    add_training_options(p, TRAINING_OPTIONS + TRAIN_ONLY_OPTIONS)
    p.set_defaults(handler=train_command)


def add_distill(sub) -> None:
    p = sub.add_parser("distill", help="knowledge distillation teacher -> featherface_v2",
                       description="Train a student (default featherface_v2) with (1-a)*task + a*T^2*KL + "
                                   "lambda*MSE(features) from a frozen teacher. Same outputs as `train`; "
                                   "feature adapters are saved apart from the student's weights.")
    p.add_argument("--teacher", required=True, type=registered_model,
                   help="teacher model name (featherface_v1, retinaface_mnet025, ...)")
    p.add_argument("--teacher-weights", required=True, help="teacher checkpoint")
    p.add_argument("--student", default="featherface_v2", type=registered_model)
    p.add_argument("--preset", default="v2_thesis")
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true", help=RESUME_HELP)
    p.add_argument("--temperature", type=float, default=None, help="softening temperature T (default 4)")
    p.add_argument("--alpha", type=float, default=None, help="weight of the KD term (default 0.7)")
    p.add_argument("--feature-weight", type=float, default=None, help="weight of the feature MSE (default 0.1)")
    p.add_argument("--progressive", action="store_true", default=None,
                   help="progressive distillation: feature levels P5, then P4-P5, then P3-P5 over thirds of the run")
    add_training_options(p, TRAINING_OPTIONS)
    p.set_defaults(handler=distill_command)


def _saved_checkpoint_field(out: str, key: str) -> dict | None:
    """The `key` entry of `<out>/last.pt` (a saved recipe), or None when there is no such file."""
    from ffcore.engine.trainer import LAST_CHECKPOINT

    last = Path(out) / LAST_CHECKPOINT
    if not last.is_file():
        return None
    from ffcore.checkpoint import load_checkpoint_file

    return load_checkpoint_file(last)[key]


def training_config(preset: str, out: str, resume: bool, overrides: dict[str, Any]):
    """The preset (or, on --resume, the saved recipe) with the options given on the command line."""
    from dataclasses import replace

    from ffcore.engine.config import TrainConfig, get_preset

    saved = _saved_checkpoint_field(out, "train_config") if resume else None
    base = TrainConfig.from_dict(saved) if saved is not None else get_preset(preset)
    return replace(base, out_dir=str(out), **{k: v for k, v in overrides.items() if v is not None})


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


def train_command(out: str, preset: str = "featherface_paper", model: str | None = None, resume: bool = False,
                  **options) -> int:
    """`ffcore train`: `options` are TrainConfig fields (None: the preset's). Returns 0 on success, 3 when
    the run stopped (diverged loss or unreadable image; the last good checkpoint is kept)."""
    from ffcore.engine.train import train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = training_config(preset, out, resume, {"model": model, **options})
    return report(train(config, resume=resume))


def distill_command(teacher: str, teacher_weights: str, out: str, student: str = "featherface_v2",
                    preset: str = "v2_thesis", resume: bool = False, temperature: float | None = None,
                    alpha: float | None = None, feature_weight: float | None = None,
                    progressive: bool | None = None, **options) -> int:
    """`ffcore distill`: returns 0 on success, 3 when the run stopped. `progressive=True`: the
    progressive schedule of `ffcore.engine.distill`."""
    from dataclasses import replace

    from ffcore.engine.distill import DistillConfig, distill

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = training_config(preset, out, resume, {"model": student, **options})
    saved = _saved_checkpoint_field(out, "distill_config") if resume else None
    base = DistillConfig.from_dict(saved) if saved is not None else DistillConfig()
    overrides = {"teacher": teacher, "teacher_weights": teacher_weights, "temperature": temperature,
                 "alpha": alpha, "feature_weight": feature_weight, "progressive": progressive}
    distillation = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    return report(distill(config, distillation, resume=resume))
