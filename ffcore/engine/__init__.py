"""Training, distillation, DDP, checkpoints and logs.

    from ffcore.engine import TrainConfig, get_preset, run_training, run_distillation, DistillConfig
    result = run_training(get_preset("synthetic_cpu", data_root="data/synthetic", out_dir="runs/v1"))
    student = run_distillation(get_preset("synthetic_cpu", model="featherface_v2", out_dir="runs/v2_kd", ...),
                               DistillConfig(teacher="featherface_v1", teacher_weights="runs/v1/best.pt"))

Training presets (`TRAINING_PRESETS`): featherface_paper, v2_thesis, retinaface_paper, smoke,
synthetic_cpu, ... (see `ffcore.engine.config`).

`run_training` / `run_distillation` are `ffcore.engine.supervised.train` and
`ffcore.engine.distill.distill`; both drive the loop of `ffcore.engine.trainer.Trainer`.
Importing this package builds nothing.
"""

from __future__ import annotations

import importlib

# Exported name -> (module, attribute). Resolved on first access (PEP 562) so that the
# torch-free recipes (`ffcore.engine.config`) import without the trainer, and `ffcore train
# --help` builds its options from `TrainConfig` without importing torch.
_EXPORTS: dict[str, tuple[str, str]] = {
    "TRAINING_PRESETS": ("ffcore.engine.config", "TRAINING_PRESETS"),
    "TrainConfig": ("ffcore.engine.config", "TrainConfig"),
    "get_preset": ("ffcore.engine.config", "get_preset"),
    "preset_names": ("ffcore.engine.config", "preset_names"),
    "DistillConfig": ("ffcore.engine.config", "DistillConfig"),
    "feature_mse": ("ffcore.engine.distill", "feature_mse"),
    "kd_class_loss": ("ffcore.engine.distill", "kd_class_loss"),
    "run_distillation": ("ffcore.engine.distill", "distill"),
    "run_training": ("ffcore.engine.supervised", "train"),
    "Trainer": ("ffcore.engine.trainer", "Trainer"),
    "TrainingDivergedError": ("ffcore.engine.trainer", "TrainingDivergedError"),
    "TrainResult": ("ffcore.engine.trainer", "TrainResult"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    return getattr(importlib.import_module(module), attribute)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
