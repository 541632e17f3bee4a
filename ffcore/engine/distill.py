"""Knowledge distillation: a frozen teacher detector guides a student (default featherface_v2).

    loss = (1 - alpha) * task + alpha * T^2 * KD + lambda * feature

- task: the student's MultiBoxLoss total (2 * box + class + landmark) on the ground truth;
- KD: KL(teacher || student) between the class distributions softened by temperature T,
  summed over the two classes and averaged over every prior of every image (B x P), i.e.
  `kl_div(log_softmax(s / T), softmax(t / T), reduction="sum") / (B * P)`; the T^2 factor
  keeps its gradient scale independent of T (Hinton et al.);
- feature: mean squared error between the student's per-level features (P3, P4, P5, the
  maps entering the heads) and the teacher's, averaged over the three levels. Where the
  channel counts differ a 1x1 conv adapter maps student channels to teacher channels.
  The adapters are trained with the student but are not part of it: checkpoints keep them
  under `distill_adapters`, the deployed `state_dict` is the student's alone.

Progressive distillation (`progressive=True`, preset "v2_thesis_progressive"). The seeds
name it ("Progressive Knowledge Distillation: multi-level transfer learning",
002_v2_implementation_plan.md; "distillation multi-étapes", 003_v2_technical_report.md 9.2)
without a schedule; this is the one ffcore applies, in three stages split at
`stage_boundaries` (fractions of the run's epochs, default thirds):

    stage 1, epochs [0, b1 * E):       feature term on P5 only (stride 32, the most semantic map)
    stage 2, epochs [b1 * E, b2 * E):  P4 and P5
    stage 3, epochs [b2 * E, E):       P3, P4 and P5 (the plain setting)

(boundaries rounded to whole epochs; with E = 400 the stages start at epochs 0, 133, 267).
The feature term is the mean over the active levels; the task and KD terms, alpha, T and
lambda stay as configured throughout. The stage is a function of the epoch alone, so a
resumed run continues the same schedule.

The teacher runs in eval mode without gradients. Checkpoints, resume, DDP and logs are the
trainer's (`ffcore.engine.trainer`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# DistillConfig lives with TrainConfig (torch-free, so `ffcore distill --help` builds its options
# without importing torch); imported here, its historical home, for callers of this module.
from ffcore.engine.config import DISTILL_PRESETS, DistillConfig, TrainConfig  # noqa: F401
from ffcore.engine.distributed import setup_distributed, teardown_distributed
from ffcore.engine.supervised import build_model, initialisation, multibox_loss_for
from ffcore.engine.trainer import Trainer, TrainResult
from ffcore.losses import MultiBoxLoss

log = logging.getLogger("ffcore.engine")

ADAPTERS_KEY = "distill_adapters"


def progressive_levels(epoch: int, epochs: int, boundaries: tuple[float, float] = (1 / 3, 2 / 3),
                       levels: int = 3) -> tuple[int, ...]:
    """Indices (0 = P3 ... 2 = P5) of the feature levels matched at 0-based `epoch` of `epochs`."""
    stage = 1 + sum(epoch >= round(b * epochs) for b in boundaries)
    return tuple(range(levels - stage, levels))


def kd_class_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(teacher || student) of the softened class distributions, mean over all priors of the batch."""
    student_log_p = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_p = F.softmax(teacher_logits.float() / temperature, dim=-1)
    priors = student_logits.shape[0] * student_logits.shape[1]
    kl = F.kl_div(student_log_p, teacher_p, reduction="sum") / priors
    return kl * temperature ** 2


def feature_mse(student_features: list[torch.Tensor], teacher_features: list[torch.Tensor],
                levels: tuple[int, ...] | None = None) -> torch.Tensor:
    """Mean over levels (all, or the indices in `levels`) of the element-wise MSE between (adapted)
    student and teacher feature maps."""
    if len(student_features) != len(teacher_features):
        raise ValueError(f"student has {len(student_features)} feature levels, teacher {len(teacher_features)}")
    losses = []
    for level, (s, t) in enumerate(zip(student_features, teacher_features)):
        if s.shape != t.shape:
            raise ValueError(f"feature level {level}: student {tuple(s.shape)} vs teacher {tuple(t.shape)}; "
                             f"both models must share strides")
        if levels is None or level in levels:
            losses.append(F.mse_loss(s.float(), t.float()))
    return torch.stack(losses).mean()


def _feature_channels(model: nn.Module, image_size: int = 64) -> list[int]:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        device = next(model.parameters()).device
        features = model(torch.zeros(1, 3, image_size, image_size, device=device), return_features=True)[3]
    model.train(was_training)
    return [f.shape[1] for f in features]


def check_prior_compatibility(student: nn.Module, teacher: nn.Module) -> None:
    """The class-logit KD term compares teacher and student prior by prior, so both must share the anchors."""
    from ffcore.anchors import DEFAULT_PRIORS

    student_priors = getattr(student, "prior_config", DEFAULT_PRIORS)
    teacher_priors = getattr(teacher, "prior_config", DEFAULT_PRIORS)
    if student_priors != teacher_priors:
        raise ValueError(
            f"cannot distil {getattr(teacher, 'name', 'teacher')} -> {getattr(student, 'name', 'student')}: "
            f"their anchors differ (teacher {teacher_priors.anchors_per_location} per location with "
            f"{teacher_priors}, student {student_priors.anchors_per_location} with {student_priors}); "
            f"the KD term compares class logits prior by prior, so pick a student with the teacher's anchors")


class StudentWithAdapters(nn.Module):
    """What distillation optimises: the student plus its feature adapters (student -> teacher channels)."""

    def __init__(self, student: nn.Module, student_channels: list[int], teacher_channels: list[int]):
        super().__init__()
        self.student = student
        self.adapters = nn.ModuleList(
            nn.Identity() if s == t else nn.Conv2d(s, t, kernel_size=1, bias=True)
            for s, t in zip(student_channels, teacher_channels))

    def forward(self, images: torch.Tensor):
        loc, conf, landm, features = self.student(images, return_features=True)
        return loc, conf, landm, [adapter(f) for adapter, f in zip(self.adapters, features)]


class DistillationTask:
    def __init__(self, student: nn.Module, teacher: nn.Module, loss: MultiBoxLoss, config: DistillConfig):
        check_prior_compatibility(student, teacher)
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.teacher = teacher
        self.model = student
        self.module = StudentWithAdapters(student, _feature_channels(student), _feature_channels(teacher))
        self.loss = loss
        self.config = config
        self.feature_levels: tuple[int, ...] | None = None     # None: every level
        self._teacher_placement: tuple[torch.device, torch.memory_format] | None = None

    def begin_epoch(self, epoch: int, epochs: int) -> None:
        if self.config.progressive:
            self.feature_levels = progressive_levels(epoch, epochs, self.config.stage_boundaries)

    def loss_terms(self, module, images, targets, priors, target_weights=None) -> dict[str, torch.Tensor]:
        cfg = self.config
        # the teacher follows the batch's device and memory layout (channels_last training keeps
        # its convolutions in one layout instead of converting at every teacher layer)
        layout = (torch.channels_last if images.dim() == 4 and not images.is_contiguous()
                  and images.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)
        if self._teacher_placement != (images.device, layout):
            self.teacher.to(images.device, memory_format=layout)
            self._teacher_placement = (images.device, layout)
        self.teacher.eval()
        with torch.no_grad():
            _, teacher_conf, _, teacher_features = self.teacher(images, return_features=True)
        loc, conf, landm, student_features = module(images)
        task_terms = self.loss(predictions=(loc, conf, landm), priors=priors, targets=targets,
                               target_weights=target_weights)
        task = self.loss.total(task_terms)
        kd = kd_class_loss(conf, teacher_conf, cfg.temperature)
        feature = feature_mse(student_features, teacher_features, self.feature_levels)
        total = (1.0 - cfg.alpha) * task + cfg.alpha * kd + cfg.feature_weight * feature
        return {**task_terms, "task": task, "kd": kd, "feature": feature, "total": total}

    def extra_state(self) -> dict[str, Any]:
        return {ADAPTERS_KEY: self.module.adapters.state_dict()}

    def load_extra_state(self, payload: dict[str, Any]) -> None:
        if ADAPTERS_KEY not in payload:
            raise KeyError(f"checkpoint has no {ADAPTERS_KEY!r}: it was not written by distillation")
        self.module.adapters.load_state_dict(payload[ADAPTERS_KEY])


def load_teacher(config: DistillConfig) -> nn.Module:
    from ffcore.models import load_pretrained

    if not config.teacher_weights:
        raise ValueError("distillation needs teacher weights (teacher_weights / --teacher-weights): "
                         "a trained featherface_v1 checkpoint or a retinaface_mnet025 file")
    return load_pretrained(config.teacher, config.teacher_weights)


def distill(config: TrainConfig, distillation: DistillConfig, *, resume: bool = False) -> TrainResult:
    """Train `config.model` (the student) from the frozen teacher of `distillation`; see the module docstring."""
    context = setup_distributed(config.device, config.dist_timeout_minutes)
    try:
        teacher = load_teacher(distillation)
        student = build_model(config.model, config.model_overrides, config.pretrained_backbone, config.seed,
                              load_backbone=not resume)
        task = DistillationTask(student, teacher, multibox_loss_for(student, config), distillation)
        teacher_fields = {"distill_config": distillation.to_dict(), "teacher_name": distillation.teacher}
        if not resume:   # on resume the start is last.pt's (the trainer carries it over)
            teacher_fields["initialisation"] = initialisation(config)
        if distillation.teacher_weights and Path(distillation.teacher_weights).is_file():
            from ffcore.checkpoint import file_sha256

            teacher_fields["teacher_sha256"] = file_sha256(distillation.teacher_weights)
        return Trainer(config, task, context, checkpoint_fields=teacher_fields, kind="distill").run(resume=resume)
    finally:
        teardown_distributed(context)
