"""Training, distillation, DDP, checkpoints and logs.

    from ffcore.engine import TrainConfig, get_preset, train, distill, DistillConfig
    result = train(get_preset("synthetic_cpu", data_root="data/synthetic", out_dir="runs/v1"))
    student = distill(get_preset("synthetic_cpu", model="featherface_v2", out_dir="runs/v2_kd", ...),
                      DistillConfig(teacher="featherface_v1", teacher_weights="runs/v1/best.pt"))

Presets: featherface_paper, v2_thesis, retinaface_paper, smoke, synthetic_cpu
(see `ffcore.engine.config`).

`train` and `distill` are functions here; their modules share the names, so reach the
modules themselves through `sys.modules` / `importlib.import_module("ffcore.engine.train")`.
Importing this package builds nothing.
"""

from __future__ import annotations

from ffcore.engine.config import PRESETS, TrainConfig, get_preset, preset_names
from ffcore.engine.trainer import Trainer, TrainingDivergedError, TrainResult
from ffcore.engine.train import train  # noqa: E402  (binds `train` to the function)
from ffcore.engine.distill import DistillConfig, distill, feature_mse, kd_class_loss

__all__ = ["PRESETS", "DistillConfig", "TrainConfig", "TrainResult", "Trainer", "TrainingDivergedError",
           "distill", "feature_mse", "get_preset", "kd_class_loss", "preset_names", "train"]
