"""Run profiles: how much data, compute and time one pass over the study notebooks takes.

Three profiles, each a frozen dataclass, chosen by name (`get_profile("smoke")`):

- `smoke`: a tiny synthetic dataset generated on first use, CPU, one or two epochs at a
  small image size. Every notebook runs end to end in minutes; the numbers only show
  that the pipeline works and say nothing about the models.
- `synthetic`: the default run without WIDER FACE or a GPU. A synthetic dataset and a
  recipe meant to bring FeatherFace V1 to AP easy >= 85 % on its validation split (not reached yet), every
  model of the study trained with it (19 trainings; the first measured run took 24 min for V1 alone on a
  loaded 2-core CPU and did not reach a useful AP, so the recipe is being re-sized) — still synthetic
  data, and labelled so on every artifact.
- `full`: WIDER FACE from `data/widerface/`, the papers' schedules, a GPU.

Each comparison changes only the factor it studies: V1 and its one-part swaps share
`train_preset` / `epochs`; V2 alone, V2 distilled (every teacher) and the V2 variants
share `student_preset` / `student_epochs`. A notebook's `epochs` / `image_size`
parameters override the profile's values when they are not None (`with_overrides`).
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
    epochs: int                       # V1 and its one-part swaps
    student_epochs: int               # V2 alone, V2 distilled and the V2 variants (one length for all of them)
    image_size: int                   # square training crop
    batch_size: int
    train_preset: str                 # ffcore.engine preset of V1 and its one-part swaps
    student_preset: str               # ffcore.engine preset of V2 alone, V2 distilled and the V2 variants
    teacher: str = "featherface_v1"   # distillation teacher (trained in notebook 01)
    student: str = "featherface_v2"
    seeds: tuple[int, ...] = (0,)     # training seeds of the V2 alone vs V2 distilled comparison
    finetune_epochs: int = 1          # pruned variants: fine-tuning from their trained parent
    bootstrap_resamples: int = 1000   # resamples of the validation images for every AP interval
    real_photo_scale: str = "origin"  # test scale of the real-photo check ("origin" or a long side in pixels)
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

    def with_overrides(self, epochs: int | None = None, image_size: int | None = None,
                       fields: dict | None = None) -> "RunProfile":
        """The profile with a notebook's `epochs` / `image_size` parameters applied (None keeps the preset),
        then any other field named in `fields` (e.g. {"bench_backends": ("torch",)} for a quick check)."""
        from dataclasses import fields as dataclass_fields

        changes: dict = {}
        if epochs is not None:
            changes.update(epochs=int(epochs), student_epochs=int(epochs))
        if image_size is not None:
            changes["image_size"] = int(image_size)
        known = {f.name for f in dataclass_fields(self)}
        unknown = sorted(set(fields or {}) - known)
        if unknown:
            raise KeyError(f"unknown profile field(s) {', '.join(unknown)}; RunProfile fields: {', '.join(sorted(known))}")
        for key, value in (fields or {}).items():
            changes[key] = _as_tuples(value)   # notebook parameters arrive as lists
        return replace(self, **changes) if changes else self


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


# The fork's current models (CBAM-exact, ECA-CBAM sequential and parallel), timed beside V1 and V2.
FORK_MODELS = ("featherface_cbam_exact", "featherface_eca_cbam", "featherface_eca_cbam_parallel")

SMOKE = RunProfile(
    name="smoke",
    description="tiny synthetic dataset, CPU, a few minutes end to end: checks the pipeline, not the models",
    dataset=SYNTHETIC, device="cpu",
    epochs=2, student_epochs=2,
    image_size=128, batch_size=4, max_steps_per_epoch=1,
    train_preset="smoke", student_preset="smoke", seeds=(0, 1), bootstrap_resamples=200, real_photo_scale="320",
    synthetic_train_images=16, synthetic_val_images=6, synthetic_long_side=(192, 320),
    eval_scale="320", eval_limit=None,
    bench_sizes=(320,), bench_repeats=3, bench_backends=("torch",),
    bench_models=("retinaface_mnet025", "featherface_v1", "featherface_v2", *FORK_MODELS),
)

# Every model of the study trains with the `synthetic_cpu` recipe for the same epochs on the same
# images, with no validation pass during training (the study evaluates every run once, with
# intervals). benchmarks/bench_train_synthetic.py brought V1 to AP easy 0.88 with this recipe at
# 320 px on 400 images. Measured on a 2-core CPU at 256 px, batch 8, 2 threads: V1 0.97 s per step,
# V2 0.43 s; a run trains 19 models (V1, 7 one-part swaps, V2 x3 seeds, distilled x3 + the WIDER FACE
# teacher, 2 V2 variants, 2 pruned fine-tunes), so 300 images (38 steps per epoch) keep it near an
# hour and a quarter; 400 would take about 90 minutes.
SYNTHETIC_PROFILE = RunProfile(
    name="synthetic",
    description="synthetic dataset, every model trained with one CPU recipe (several hours on a 2-core CPU as sized now)",
    dataset=SYNTHETIC, device="cpu",
    epochs=8, student_epochs=8,
    image_size=256, batch_size=8,
    train_preset="synthetic_cpu", student_preset="synthetic_cpu", seeds=(0, 1, 2), finetune_epochs=2,
    synthetic_train_images=300, synthetic_val_images=100, synthetic_long_side=(320, 640),
    eval_scale="origin", eval_limit=None, val_every=0,
    bench_sizes=(640,), bench_repeats=10,
    bench_models=("retinaface_mnet025", "featherface_v1", "featherface_v2", *FORK_MODELS),
)

FULL = RunProfile(
    name="full",
    description="WIDER FACE, the papers' training schedules, GPU",
    dataset=WIDERFACE, device="cuda",
    epochs=350, student_epochs=400,
    image_size=640, batch_size=32,
    train_preset="featherface_paper", student_preset="v2_thesis", seeds=(0, 1, 2), finetune_epochs=20,
    eval_scale="origin", eval_limit=None,
    bench_sizes=(640,), bench_repeats=50, bench_backends=("torch", "onnx_fp32", "onnx_int8"),
    val_every=10, workers=4,
)

PROFILES: dict[str, RunProfile] = {p.name: p for p in (SMOKE, SYNTHETIC_PROFILE, FULL)}


def get_profile(name: str) -> RunProfile:
    if name not in PROFILES:
        raise KeyError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]
