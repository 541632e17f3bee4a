"""Training, distillation, DDP, checkpoints and logs.

    from ffcore.engine import TrainConfig, get_preset, run_training, run_distillation, DistillConfig
    result = run_training(get_preset("synthetic_cpu", data_root="data/synthetic", out_dir="runs/v1"))
    student = run_distillation(get_preset("synthetic_cpu", model="featherface_v2", out_dir="runs/v2_kd", ...),
                               DistillConfig(teacher="featherface_v1", teacher_weights="runs/v1/best.pt"))

Training presets (`TRAINING_PRESETS`): featherface_paper, v2_thesis, retinaface_paper, smoke,
synthetic_cpu, ... (see `ffcore.engine.config`).

`run_training` / `run_distillation` are `ffcore.engine.train.train` and
`ffcore.engine.distill.distill` under names that do not hide their modules: `ffcore.engine.train`
stays the module. Importing this package builds nothing.
"""

from __future__ import annotations

from ffcore.engine.config import TRAINING_PRESETS, TrainConfig, get_preset, preset_names
from ffcore.engine.distill import DistillConfig, feature_mse, kd_class_loss
from ffcore.engine.distill import distill as run_distillation
from ffcore.engine.train import train as run_training
from ffcore.engine.trainer import Trainer, TrainingDivergedError, TrainResult

__all__ = ["TRAINING_PRESETS", "DistillConfig", "TrainConfig", "TrainResult", "Trainer", "TrainingDivergedError",
           "feature_mse", "get_preset", "kd_class_loss", "preset_names", "run_distillation", "run_training"]
