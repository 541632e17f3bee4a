"""Training recipes as frozen dataclasses, with named presets.

A recipe is a preset plus `dataclasses.replace` overrides (the CLI does exactly that):

    config = replace(get_preset("featherface_paper"), data_root="data/widerface", epochs=10)

`batch_size` is per process: under DDP the global batch is batch_size x world size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class TrainConfig:
    # what to train
    model: str = "featherface_v1"
    model_overrides: dict = field(default_factory=dict)
    pretrained_backbone: bool | str = True      # True: the ImageNet MobileNet-0.25 file if found; or a path
    # data
    data_root: str | None = None                # WIDER-format root (label.txt preferred); None: data/widerface
    val_root: str | None = None                 # root holding WIDER_val + the evaluation .mat files; None: data_root
    image_size: int = 640
    batch_size: int = 32
    workers: int = 4
    persistent_workers: bool = True             # keep loader processes between epochs (workers > 0)
    prefetch_factor: int = 2                    # batches each loader process prepares ahead (workers > 0)
    mixup_prob: float = 0.0                     # share of samples mixed with MixUp (faces weighted by lam)
    mixup_alpha: float = 0.2
    cutmix_prob: float = 0.0                    # share of samples mixed with CutMix (ffcore.data.mixing)
    # optimisation
    epochs: int = 350
    optimizer: str = "adamw"                    # adamw | adam | sgd
    lr: float = 1e-3
    weight_decay: float = 0.01
    momentum: float = 0.9                       # sgd only
    schedule: str = "onecycle"                  # onecycle | warmup_cosine | step | constant | cosine_restarts
    warmup_epochs: float = 0.0                  # warmup_cosine / step
    min_lr: float = 1e-6                        # warmup_cosine
    onecycle_pct_start: float = 0.3
    step_milestones: tuple[int, ...] = ()       # step: epochs where lr is multiplied by step_gamma
    step_gamma: float = 0.1
    grad_clip_norm: float | None = None
    loc_weight: float = 2.0
    overlap_threshold: float = 0.35             # MultiBoxLoss: priors at or above this IoU with a face are positives
    restart_epochs: int | None = None           # cosine_restarts: epochs per cosine cycle (T_0); None: epochs
    decay_all_parameters: bool = True           # as every original; False: no decay on 1-D parameters (norm
                                                # weights, biases, BiFPN fusion weights)
    # run
    out_dir: str = "runs/train"
    seed: int = 0
    device: str | None = None                   # None: cuda when available, else cpu
    amp: bool = False                           # mixed precision (float16 autocast, CUDA only); the originals train in FP32
    amp_dtype: str = "float16"                  # autocast type when amp: float16 (CUDA) | bfloat16 (CUDA or CPU)
    channels_last: bool = False                 # NHWC memory format for the model and its inputs (faster convs on GPUs
                                                # and on the CPU: benchmarks/bench_train_step.py)
    fused_optimizer: bool = False               # the fused Adam/AdamW kernel (same update, other rounding)
    cudnn_benchmark: bool = False               # cuDNN autotuning (CUDA only): picks the fastest algorithm for each
                                                # convolution shape; the same convolutions up to rounding
    sync_batchnorm: bool = False                # DDP only
    dist_timeout_minutes: float = 30.0          # DDP: a collective that waits longer than this fails the run
    allow_world_size_change: bool = False       # resume under another process count (changes global batch and schedule)
    # validation (WIDER FACE protocol on the val tree)
    val_every: int = 0                          # epochs between validations; 0: never
    val_scale: str | int = "origin"             # origin | vga | <long side in pixels>
    best_metric: str = "hard"                   # easy | medium | hard | loss (lower is better) | final (last epoch)
    val_batch_size: int = 16                    # validation images of one size per forward pass (1: one by one;
                                                # the same detections up to float rounding, tests/test_batched_validation.py)
    # logging
    progress: bool = True                       # tqdm bar
    tensorboard: bool = True
    log_every_steps: int = 0                    # also log running losses to train.log every N steps; 0: per epoch only
    sync_every_steps: int = 1                   # read losses on the host (NaN check, running sums) every N steps: >1
                                                # keeps a GPU busy; a non-finite loss is then caught up to N-1 steps late
    max_steps_per_epoch: int | None = None      # cap (quick checks); None: the whole dataset
    stop_after_epoch: int | None = None         # end this invocation after this epoch (time-boxed jobs; resume later)
    skip_unreadable_images: bool = False        # skip (log, count) a missing / undecodable image instead of stopping

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validation_passes(self) -> int:
        """Validations a full run makes: every val_every-th epoch and the last (the trainer's rule)."""
        if self.val_every <= 0:
            return 0
        return self.epochs // self.val_every + (1 if self.epochs % self.val_every else 0)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Rebuild from a checkpoint's `train_config`; unknown keys raise an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"training config has unknown keys {unknown}; known keys: {sorted(known)}")
        values = dict(values)
        for key, value in LEGACY_DEFAULTS.items():
            values.setdefault(key, value)
        if "cutmix_prob" not in values and values.get("mixup_prob"):
            # Before cutmix_prob existed, mixup_prob was the share of batches mixed by MixUp or
            # CutMix, half each: keep those shares.
            values["mixup_prob"], values["cutmix_prob"] = values["mixup_prob"] / 2, values["mixup_prob"] / 2
        if "step_milestones" in values:
            values["step_milestones"] = tuple(values["step_milestones"])
        return cls(**values)


# The values of the fields that name a choice (the `ffcore train` options offer exactly these;
# `ffcore.engine.schedules` builds each optimiser and schedule, tests/cli/test_cli.py checks both agree).
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("onecycle", "warmup_cosine", "step", "constant", "cosine_restarts")
# what best.pt is: the best validation AP of a setting, the lowest training loss, or "final" (the
# last epoch's weights, as the papers report them: no choice among noisy measurements)
BEST_METRICS = ("easy", "medium", "hard", "loss", "final")

# Values that reproduce what older checkpoints did, for the keys they lack: before
# `decay_all_parameters` existed, 1-D parameters were never decayed.
LEGACY_DEFAULTS: dict[str, Any] = {"decay_all_parameters": False}

# Every preset trains in FP32 (amp=False) like the original code; mixed precision is an
# explicit `amp=True`, recorded per epoch in the history and in the checkpoint ("precision").

# The FeatherFace paper's released training setup (ARCHITECTURES.md, featherface_v1).
FEATHERFACE_PAPER = TrainConfig(model="featherface_v1", optimizer="adamw", lr=1e-3, weight_decay=0.01,
                                schedule="onecycle", epochs=350, batch_size=32, image_size=640)

# The thesis's V2 recipe (003_v2_technical_report.md, 3.2-3.3): AdamW (wd 5e-4), 5 warm-up epochs
# then cosine to 1e-6, 400 epochs; CutMix on 50 % of the samples as the report states, MixUp
# (alpha 0.2, lam-weighted targets) on the other half, the report giving it no probability.
# DropBlock (block 3, p 0.1) is part of the featherface_v2 model (ffcore.models.zoo); the
# progressive distillation option is `ffcore.engine.distill.DISTILL_PRESETS`.
V2_THESIS = TrainConfig(model="featherface_v2", optimizer="adamw", lr=1e-3, weight_decay=5e-4,
                        schedule="warmup_cosine", warmup_epochs=5, min_lr=1e-6, epochs=400,
                        batch_size=32, image_size=640, mixup_prob=0.5, mixup_alpha=0.2, cutmix_prob=0.5)

# Pytorch_Retinaface's MobileNet-0.25 recipe: SGD 1e-3, momentum 0.9, wd 5e-4, 250 epochs,
# lr x0.1 at epochs 190 and 220.
RETINAFACE_PAPER = TrainConfig(model="retinaface_mnet025", optimizer="sgd", lr=1e-3, momentum=0.9,
                               weight_decay=5e-4, schedule="step", step_milestones=(190, 220), epochs=250,
                               batch_size=32, image_size=640)

# Seconds on a CPU: a couple of tiny epochs, no validation (tests, notebook smoke profile).
SMOKE = TrainConfig(model="retinaface_mnet025", epochs=2, batch_size=4, image_size=96, workers=0,
                    optimizer="adamw", lr=1e-3, weight_decay=5e-4, schedule="warmup_cosine", warmup_epochs=0,
                    min_lr=1e-5, val_every=0, best_metric="loss", amp=False, tensorboard=False,
                    progress=False, max_steps_per_epoch=4)

# FeatherFace V1 on the synthetic dataset on a CPU: the recipe of the study's 'synthetic' profile,
# which runs it for 10 epochs (ffcore/runs/profiles.py sets `epochs`) on the 400 synthetic
# training images at 320 px, validation at a fixed long side of 320 px. The preset's own 8 epochs
# are what benchmarks/bench_train_synthetic.py measured (1 thread): about 7 minutes of training,
# AP easy 0.88 on the synthetic validation split; 4 epochs stay near zero AP. NHWC tensors
# (channels_last) train 1.13-1.17x faster on this CPU than contiguous ones, alone at 2 threads, and
# 1.15-1.37x in two 1-thread trainings side by side (benchmarks/bench_train_step.py, V1 / V2 / V2
# distilled); the same convolutions in another layout, so the same results up to rounding.
SYNTHETIC_CPU = TrainConfig(model="featherface_v1", epochs=8, batch_size=8, image_size=320, workers=1,
                            optimizer="adamw", lr=3e-3, weight_decay=5e-4, schedule="onecycle",
                            onecycle_pct_start=0.15, val_every=4, val_scale=320, best_metric="easy",
                            amp=False, tensorboard=False, channels_last=True)

# The thesis's V2 recipe (V2_THESIS) brought to the synthetic CPU setting, to train V2 with its own
# recipe beside the shared one (the synthetic_seeds profile): V2_THESIS's optimiser, peak learning rate
# (1e-3), weight decay, MixUp / CutMix and warm-up + cosine schedule, the warm-up scaled to the same share
# of the run (5 of 400 epochs = 1.25 %: 0.125 of the synthetic profile's 10 epochs). Crop, batch, NHWC
# and the validation scale are synthetic_cpu's, so only the recipe differs from the shared one.
SYNTHETIC_CPU_V2_THESIS = replace(SYNTHETIC_CPU, model="featherface_v2", lr=V2_THESIS.lr,
                                  weight_decay=V2_THESIS.weight_decay, schedule=V2_THESIS.schedule,
                                  warmup_epochs=10 * V2_THESIS.warmup_epochs / V2_THESIS.epochs,
                                  min_lr=V2_THESIS.min_lr, mixup_prob=V2_THESIS.mixup_prob,
                                  mixup_alpha=V2_THESIS.mixup_alpha, cutmix_prob=V2_THESIS.cutmix_prob)

# The recipe that trained the fork's published ECA-CBAM weights (fokouarnaud/FeatherFace f023145,
# train_eca_cbam.py): Adam (L2 weight decay 1e-4 on every parameter), CosineAnnealingWarmRestarts
# with T_0 = the run's 350 epochs and eta_min 1e-6 stepped once per epoch, batch 32 at 640 px, and
# priors matched at IoU 0.5 instead of RetinaFace's 0.35. The fork never validated during training
# (it kept its final weights), so best.pt is chosen by training loss unless --best-metric says otherwise.
FORK_ECA_CBAM = TrainConfig(model="featherface_eca_cbam", optimizer="adam", lr=1e-3, weight_decay=1e-4,
                            decay_all_parameters=True, schedule="cosine_restarts", min_lr=1e-6, epochs=350,
                            batch_size=32, image_size=640, overlap_threshold=0.5, best_metric="loss")

TRAINING_PRESETS: dict[str, TrainConfig] = {
    "featherface_paper": FEATHERFACE_PAPER,
    "v2_thesis": V2_THESIS,
    "retinaface_paper": RETINAFACE_PAPER,
    "smoke": SMOKE,
    "synthetic_cpu": SYNTHETIC_CPU,
    "synthetic_cpu_v2_thesis": SYNTHETIC_CPU_V2_THESIS,
    "fork_eca_cbam": FORK_ECA_CBAM,
}


def preset_names() -> list[str]:
    return sorted(TRAINING_PRESETS)


def get_preset(name: str, **overrides) -> TrainConfig:
    """A preset with optional overrides (`dataclasses.replace`)."""
    if name not in TRAINING_PRESETS:
        raise KeyError(f"unknown training preset {name!r}; presets: {', '.join(preset_names())}")
    return replace(TRAINING_PRESETS[name], **overrides) if overrides else TRAINING_PRESETS[name]


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation settings (the loss and the progressive schedule: `ffcore.engine.distill`)."""
    teacher: str = "featherface_v1"
    teacher_weights: str | None = None
    temperature: float = 4.0
    alpha: float = 0.7
    feature_weight: float = 0.1
    progressive: bool = False                                # feature levels added stage by stage (docstring)
    stage_boundaries: tuple[float, float] = (1 / 3, 2 / 3)   # progressive: where stages 2 and 3 begin

    def __post_init__(self):
        b = tuple(self.stage_boundaries)
        if len(b) != 2 or not 0 < b[0] <= b[1] < 1:
            raise ValueError(f"DistillConfig.stage_boundaries must be two fractions 0 < b1 <= b2 < 1, got {b}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DistillConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"distillation config has unknown keys {unknown}; known keys: {sorted(known)}")
        values = dict(values)
        if "stage_boundaries" in values:
            values["stage_boundaries"] = tuple(values["stage_boundaries"])
        return cls(**values)


# The thesis's distillation (T 4, alpha 0.7, lambda 0.1) and its progressive variant.
DISTILL_PRESETS: dict[str, DistillConfig] = {
    "v2_thesis": DistillConfig(),
    "v2_thesis_progressive": DistillConfig(progressive=True),
}


# Fields that may change when a run is resumed; any other difference would make the
# continued run a different recipe (e.g. the OneCycle length depends on `epochs`).
RESUMABLE_CHANGES = frozenset({"out_dir", "device", "workers", "progress", "tensorboard", "val_every",
                               "val_scale", "val_root", "data_root", "amp", "pretrained_backbone", "log_every_steps",
                               "stop_after_epoch", "skip_unreadable_images", "persistent_workers", "prefetch_factor",
                               "dist_timeout_minutes", "allow_world_size_change", "amp_dtype", "channels_last",
                               "sync_every_steps", "fused_optimizer",
                               "cudnn_benchmark", "val_batch_size"})


def recipe_differences(saved: TrainConfig, requested: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """{field: (saved, requested)} for the fields that must not change on resume."""
    diffs = {}
    for f in fields(TrainConfig):
        if f.name in RESUMABLE_CHANGES:
            continue
        a, b = getattr(saved, f.name), getattr(requested, f.name)
        if a != b:
            diffs[f.name] = (a, b)
    return diffs
