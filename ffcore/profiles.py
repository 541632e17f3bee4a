"""Run profiles: how much data, compute and time one pass over the study notebooks takes.

Three presets, each a frozen dataclass, chosen by name (`get_profile("smoke")`):

- `smoke`: a tiny synthetic dataset generated on first use, CPU, one or two epochs at a
  small image size. Every notebook runs end to end in minutes; the numbers only show
  that the pipeline works and say nothing about the models.
- `synthetic`: a larger synthetic dataset trained long enough (about an hour on a
  two-core CPU) that comparisons between models start to mean something — still
  synthetic data, and labelled so on every artifact.
- `full`: WIDER FACE from `data/widerface/`, the papers' schedules, a GPU.

A notebook's `epochs` / `image_size` parameters override the profile's values when
they are not None (`with_overrides`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ffcore.provenance import SYNTHETIC, WIDERFACE


@dataclass(frozen=True)
class RunProfile:
    name: str
    description: str
    dataset: str                      # "synthetic" or "widerface"
    device: str                       # default device of the notebooks
    epochs: int                       # supervised training of every model (V1, V2, each ablation variant)
    distill_epochs: int               # teacher -> student training
    image_size: int                   # square training crop
    batch_size: int
    train_preset: str                 # ffcore.engine preset for supervised training
    distill_preset: str               # ffcore.engine preset for distillation
    teacher: str = "featherface_v1"   # distillation teacher (trained in notebook 01)
    student: str = "featherface_v2"
    synthetic_train_images: int | None = None   # size of the generated dataset (synthetic profiles)
    synthetic_val_images: int | None = None
    synthetic_long_side: tuple[int, int] = (320, 640)   # image long side range of the generated dataset
    eval_scale: str = "origin"        # test scale for AP: "origin", "vga" or a long side in pixels
    eval_limit: int | None = None     # evaluate on the first N validation images only
    flops_size: int = 640             # square input for the FLOP tables (the papers' setting)
    bench_sizes: tuple[int, ...] = (640,)
    bench_backends: tuple[str, ...] = ("torch", "onnx_fp32")   # ONNX export is slow on a small CPU
    bench_models: tuple[str, ...] | None = None   # None: the main models plus registered V2 variants
    bench_repeats: int = 20
    max_steps_per_epoch: int | None = None   # cap on optimiser steps per epoch (None: the whole dataset)
    val_every: int | None = None      # epochs between validations during training (None: the preset's)
    workers: int = 0
    seed: int = 0

    @property
    def is_synthetic(self) -> bool:
        return self.dataset == SYNTHETIC

    def with_overrides(self, epochs: int | None = None, image_size: int | None = None) -> "RunProfile":
        """The profile with a notebook's `epochs` / `image_size` parameters applied (None keeps the preset)."""
        changes: dict = {}
        if epochs is not None:
            changes.update(epochs=int(epochs), distill_epochs=int(epochs))
        if image_size is not None:
            changes["image_size"] = int(image_size)
        return replace(self, **changes) if changes else self


SMOKE = RunProfile(
    name="smoke",
    description="tiny synthetic dataset, CPU, a few minutes end to end: checks the pipeline, not the models",
    dataset=SYNTHETIC, device="cpu",
    epochs=2, distill_epochs=2,
    image_size=128, batch_size=4, max_steps_per_epoch=1,
    train_preset="smoke", distill_preset="smoke",
    synthetic_train_images=16, synthetic_val_images=6, synthetic_long_side=(192, 320),
    eval_scale="320", eval_limit=None,
    bench_sizes=(320,), bench_repeats=3, bench_backends=("torch",),
    bench_models=("retinaface_mnet025", "featherface_v1", "featherface_v2"),
)

SYNTHETIC_PROFILE = RunProfile(
    name="synthetic",
    description="synthetic dataset trained long enough for model comparisons (about an hour on a 2-core CPU)",
    dataset=SYNTHETIC, device="cpu",
    epochs=8, distill_epochs=8,
    image_size=160, batch_size=8,
    train_preset="synthetic_cpu", distill_preset="synthetic_cpu",
    synthetic_train_images=200, synthetic_val_images=60,
    eval_scale="origin", eval_limit=None,
    bench_sizes=(320, 640), bench_repeats=10,
)

FULL = RunProfile(
    name="full",
    description="WIDER FACE, the papers' training schedules, GPU",
    dataset=WIDERFACE, device="cuda",
    epochs=350, distill_epochs=400,
    image_size=640, batch_size=32,
    train_preset="featherface_paper", distill_preset="v2_thesis",
    eval_scale="origin", eval_limit=None,
    bench_sizes=(640,), bench_repeats=50, bench_backends=("torch", "onnx_fp32", "onnx_int8"),
    val_every=10, workers=4,
)

PROFILES: dict[str, RunProfile] = {p.name: p for p in (SMOKE, SYNTHETIC_PROFILE, FULL)}


def get_profile(name: str) -> RunProfile:
    if name not in PROFILES:
        raise KeyError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]
