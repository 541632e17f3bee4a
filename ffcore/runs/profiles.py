"""Run profiles: how much data, compute and time one pass over the study notebooks takes.

Three profiles, each a frozen dataclass, chosen by name (`get_profile("smoke")`):

- `smoke`: a tiny synthetic dataset generated on first use, CPU, one or two epochs at a
  small image size. Every notebook runs end to end in minutes; the numbers only show
  that the pipeline works and say nothing about the models.
- `synthetic`: the default run without WIDER FACE or a GPU. A synthetic dataset and one CPU
  recipe for every model (FeatherFace V1 aimed at AP easy >= 85 %, medium >= 65 % on the
  synthetic validation split), 15 trainings sized to finish inside 90 minutes on a 2-core CPU —
  still synthetic data, and labelled so on every artifact.
- `full`: WIDER FACE from `data/widerface/`, the papers' schedules, a GPU.

Each comparison changes only the factor it studies: V1 and its one-part swaps share
`train_preset` / `epochs`; V2 alone, V2 distilled (every teacher) and the V2 variants
share `student_preset` / `student_epochs`. A notebook's `epochs` / `image_size`
parameters override the profile's values when they are not None (`with_overrides`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ffcore.engine.resources import default_loader_workers
from ffcore.report.provenance import SYNTHETIC, WIDERFACE


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
    # where the teacher's weights come from: "trained" (its run in this study) or "released" (the
    # released V1 trained on WIDER FACE, ffcore.runs.plan.RELEASED_V1_FILE: the distillation starts
    # without the teacher's training; recorded in the distilled runs' fingerprint)
    teacher_weights: str = "trained"
    student: str = "featherface_v2"
    seeds: tuple[int, ...] = (0,)     # training seeds of the V2 alone vs V2 distilled comparison
    # training seeds of V1, its one-part swaps and V2's variants (the distillation's teacher is V1's
    # run of the first seed); one seed makes every comparison with them "one seed: not established"
    model_seeds: tuple[int, ...] = (0,)
    finetune_epochs: int = 1          # pruned variants: fine-tuning from their trained parent
    # the pruning control: each pruned variant's parent also fine-tuned, unpruned, for finetune_epochs
    # (so the pruned model is compared with as much training as it had)
    pruning_control: bool = False
    # the training-budget curve: V1, V2 alone and V2 distilled also trained for these lengths (first
    # seed; the distillation's teacher stays V1's run of `epochs`)
    budget_epochs: tuple[int, ...] = ()
    # V2 also trained with its own recipe (a training preset) over `model_seeds`, against the shared
    # `student_preset`; None: not trained
    student_own_preset: str | None = None
    # how long V2's own recipe trains (None: the student's length). Its warm-up + cosine schedule was
    # written for 400 epochs; squeezed into 10 it only shows that it under-trains, so the budget profile
    # trains it at a budget length, against V2 with the shared recipe at that same length
    own_recipe_epochs: int | None = None
    # V2 also trained from random weights (over `model_seeds`) where V2-ViT is trained: V2-ViT starts
    # from random weights, V2 from ImageNet, so "V2-ViT against V2" alone mixes both changes
    random_start_control: bool = False
    bootstrap_resamples: int = 1000   # resamples of the validation images for every AP interval
    real_photo_scale: str = "origin"  # test scale of the real-photo check ("origin" or a long side in pixels)
    synthetic_train_images: int | None = None   # size of the generated dataset (synthetic profiles)
    synthetic_val_images: int | None = None
    # held-out test split of the generated dataset, from its own image stream; every headline AP and
    # verdict is read from it (validation stays for model selection). None/0: no test split.
    synthetic_test_images: int | None = None
    # the test split's own seed (None: the profile's `seed` plus its `seed_offset`, so a rerun with
    # disjoint training seeds is also evaluated on test images of its own)
    synthetic_test_seed: int | None = None
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
    # Which of the declared comparisons this profile trains (None: all of them). A CPU profile
    # cannot afford every V1-sized training; the tables say which rows were left out.
    ablation_swaps: tuple[str, ...] | None = None      # V1's one-part swaps (ffcore.models.zoo.ONE_PART_SWAPS)
    v2_variants: tuple[str, ...] | None = None         # V2's registered variants (ffcore.runs.training.V2_VARIANTS)
    widerface_teachers: tuple[str, ...] | None = None  # tags of ffcore.runs.training.WIDERFACE_TEACHERS
    # Speed settings of every training: one definition, read by `ffcore study train` (through
    # `training_speed`) and by benchmarks/bench_gpu_throughput.py, so the benchmark times what the study
    # runs. Recorded per session in each run's run.json; the fingerprint holds those that change what
    # is learned (precision, channels-last, clipping; ffcore.runs.records.NON_IDENTITY_FIELDS says why
    # the others do not). None keeps the training preset's value; every preset trains in FP32.
    workers: int | None = None        # DataLoader processes of each training; None: the usable CPUs but one
    amp: bool | None = None           # mixed precision (autocast); None: the preset's (FP32 in every preset)
    amp_dtype: str | None = None      # "float16" (CUDA) or "bfloat16"; None: the preset's (float16)
    channels_last: bool | None = None   # NHWC model and inputs; None: the preset's
    cudnn_benchmark: bool = False     # cuDNN autotuning (CUDA only)
    prefetch_factor: int = 2          # batches each loader process prepares ahead
    sync_every_steps: int = 1         # losses read on the host every N steps (a GPU waits at each read)
    grad_clip_norm: float | None = None   # clip the gradient norm; None: the preset's (no clipping), 0: none
    train_workers: int = 1            # trainings run side by side before the notebooks (run_all.py --workers)
    seed: int = 0
    # added to every training seed (run names carry the shifted seed): a second run with a disjoint
    # set of seeds checks that the first run's verdicts survive a retraining
    seed_offset: int = 0

    def __post_init__(self):
        def fail(field_name: str, expected: str):
            raise ValueError(f"profile {self.name}: {field_name}={getattr(self, field_name)!r}, expected {expected}")

        for flag in ("amp", "channels_last"):
            if getattr(self, flag) is not None and not isinstance(getattr(self, flag), bool):
                fail(flag, "True, False or None")
        if not isinstance(self.cudnn_benchmark, bool):
            fail("cudnn_benchmark", "True or False")
        if self.amp_dtype not in (None, *AMP_DTYPES):
            fail("amp_dtype", f"one of {', '.join(AMP_DTYPES)} or None")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 0):
            fail("workers", "a whole number >= 0 or None (the usable CPUs but one)")
        for count in ("prefetch_factor", "sync_every_steps"):
            if not isinstance(getattr(self, count), int) or getattr(self, count) < 1:
                fail(count, "a whole number >= 1")
        if self.grad_clip_norm is not None and (isinstance(self.grad_clip_norm, bool)
                                                or not isinstance(self.grad_clip_norm, (int, float))
                                                or self.grad_clip_norm < 0):
            fail("grad_clip_norm", "a norm >= 0 (0: no clipping) or None")

    def training_speed(self) -> dict:
        """The training-config fields (`ffcore.engine.config.TrainConfig`) this profile sets on every
        training for speed; a field left None keeps the preset's value and is not in the dict."""
        speed = {"workers": default_loader_workers() if self.workers is None else self.workers,
                 "cudnn_benchmark": self.cudnn_benchmark, "prefetch_factor": self.prefetch_factor,
                 "sync_every_steps": self.sync_every_steps}
        for name in ("amp", "amp_dtype", "channels_last", "grad_clip_norm"):
            if getattr(self, name) is not None:
                speed[name] = getattr(self, name)
        return speed

    @property
    def is_synthetic(self) -> bool:
        return self.dataset == SYNTHETIC

    @property
    def test_split_seed(self) -> int | None:
        """The seed the generated test split is drawn from; None when it is the dataset's own seed."""
        seed = self.synthetic_test_seed if self.synthetic_test_seed is not None else self.seed + self.seed_offset
        return None if seed == self.seed else seed

    def chosen(self, field: str, declared: list[str]) -> list[str]:
        """`declared` narrowed to this profile's choice in `field` (None keeps all), in declaration order;
        a name the choice holds that is not declared is an error naming the field."""
        choice = getattr(self, field)
        if choice is None:
            return list(declared)
        unknown = sorted(set(choice) - set(declared))
        if unknown:
            raise KeyError(f"profile field {field} names {', '.join(unknown)}, which is not one of "
                           f"{', '.join(declared) or 'nothing registered'}")
        return [name for name in declared if name in choice]

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
            raise UnknownProfileFieldError(f"unknown profile field(s) {', '.join(unknown)}; "
                                           f"RunProfile fields: {', '.join(sorted(known))}")
        for key, value in (fields or {}).items():
            changes[key] = _as_tuples(value)   # notebook parameters arrive as lists
        return replace(self, **changes) if changes else self


class UnknownProfileFieldError(KeyError):
    """An override names no field of RunProfile (the message lists the fields)."""

    def __str__(self) -> str:   # KeyError's own quotes the message
        return str(self.args[0])


# The training-config fields a profile's speed settings set (`RunProfile.training_speed`); each run's
# record keeps their values per session.
SPEED_FIELDS = ("amp", "amp_dtype", "channels_last", "cudnn_benchmark", "workers", "prefetch_factor",
                "sync_every_steps", "grad_clip_norm")
AMP_DTYPES = ("float16", "bfloat16")


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


# The fork's current models (CBAM-exact, ECA-CBAM sequential and parallel), timed beside V1 and V2.
FORK_MODELS = ("featherface_cbam_exact", "featherface_eca_cbam", "featherface_eca_cbam_parallel")

SMOKE = RunProfile(
    name="smoke",
    description="tiny synthetic dataset, CPU, a few minutes end to end: checks the pipeline, not the models",
    dataset=SYNTHETIC, device="cpu", workers=0,
    epochs=2, student_epochs=2,
    image_size=128, batch_size=4, max_steps_per_epoch=1,
    train_preset="smoke", student_preset="smoke", seeds=(0, 1), bootstrap_resamples=200, real_photo_scale="320",
    synthetic_train_images=16, synthetic_val_images=6, synthetic_test_images=6, synthetic_long_side=(192, 320),
    eval_scale="320", eval_limit=None,
    bench_sizes=(320,), bench_repeats=3, bench_backends=("torch",),
    bench_models=("retinaface_mnet025", "featherface_v1", "featherface_v2", *FORK_MODELS),
    # every kind of run, for a step each: the budget curve, V2's own recipe and the pruning control
    budget_epochs=(3,), student_own_preset="synthetic_cpu_v2_thesis", pruning_control=True,
)

# Every model of the study trains with the `synthetic_cpu` recipe (320 px crops, batch 8, OneCycle
# 3e-3, NHWC tensors) for the same 10 epochs on the same 400 generated images, with no validation pass
# during training; the study evaluates every run once, with intervals, on the held-out test split at
# the recipe's validation scale (long side 320). 8 epochs left V1 at AP easy / medium 83.8 / 63.3
# (benchmarks/bench_train_synthetic.py), 4 epochs near 0. Two 1-thread trainings run side by side; on
# an idle 2-core CPU that trains 11.5 images/s of V1 and 24.8 of V2 in all (benchmarks/
# bench_train_step.py), so a V1-sized training of 50 steps x 10 epochs takes about 12 min of one
# worker and V2 about 5.5. Inside 90 minutes the profile trains V1, two of its one-part swaps (context
# and neck, the two largest parts), V2 alone and distilled from V1 for five seeds each and the two
# pruned fine-tunes (15 trainings). The other five swaps, V2's variants, V1 over seeds and the
# distillation from the WIDER FACE-trained teacher do not fit beside them: they are `synthetic_seeds`'s,
# and the training-budget curve and the pruning control are `synthetic_long`'s.
SYNTHETIC_PROFILE = RunProfile(
    name="synthetic",
    description="synthetic dataset, every model trained with one CPU recipe on a CPU (the measured duration is in "
                "results/synthetic/summary.md)",
    dataset=SYNTHETIC, device="cpu", workers=0,
    epochs=10, student_epochs=10,
    image_size=320, batch_size=8,
    train_preset="synthetic_cpu", student_preset="synthetic_cpu", seeds=(0, 1, 2, 3, 4), finetune_epochs=2,
    # 500 held-out test images evaluated at their native size (long side 320-640), as WIDER FACE is: at a
    # long side of 320, 39 % of the hard faces were under 10 px, and 100 images made the image part of
    # every interval wide. A rerun with `seed_offset` draws its test split from another seed.
    synthetic_train_images=400, synthetic_val_images=100, synthetic_test_images=500,
    synthetic_long_side=(320, 640),
    eval_scale="origin", eval_limit=None, val_every=0,
    # the two largest parts, and the placebo (V2's head layout, the same computation as V1's): the noise floor
    ablation_swaps=("featherface_v1_ssh_grouped", "featherface_v1_bifpn_light", "featherface_v1_v2_heads"),
    v2_variants=(),
    # two 1-thread trainings side by side: 1.20x (V1) and 1.52x (V2) the images/s of one training at
    # 2 threads, measured side by side (benchmarks/bench_train_step.py)
    train_workers=2,
    widerface_teachers=(),
    bench_sizes=(640,), bench_repeats=10,
    bench_models=("retinaface_mnet025", "featherface_v1", "featherface_v2", *FORK_MODELS),
)

# Every comparison the thesis states gets three seeds on both sides (V1 and its swaps over
# `model_seeds`, V2 alone, distilled and its variants over `seeds`): with one seed a side a comparison
# can only read "one seed: not established". `ffcore study plan --profile full` prints each question's
# cost and the smallest difference three seeds can establish from the measured seed spreads.
FULL = RunProfile(
    name="full",
    description="WIDER FACE, the papers' training schedules, GPU; every stated comparison over 3 seeds a side",
    dataset=WIDERFACE, device="cuda",
    epochs=350, student_epochs=400,
    image_size=640, batch_size=32,
    train_preset="featherface_paper", student_preset="v2_thesis", seeds=(0, 1, 2), model_seeds=(0, 1, 2),
    random_start_control=True,
    finetune_epochs=20,
    eval_scale="origin", eval_limit=None,
    bench_sizes=(640,), bench_repeats=50, bench_backends=("torch", "onnx_fp32", "onnx_int8"),
    val_every=10,
    # a GPU node: a loader process per usable CPU but the trainer's, NHWC tensors, cuDNN autotuning,
    # losses read every 10 steps; FP32 as the papers trained (mixed precision: --override amp=True)
    workers=None, channels_last=True, cudnn_benchmark=True, prefetch_factor=4, sync_every_steps=10,
    # V2 learns from the released V1 (trained on WIDER FACE by the authors' code), so the central
    # distillation does not wait for V1's 350 epochs; "trained" distils from the V1 trained here
    teacher_weights="released",
)

# The synthetic study with what does not fit in the default profile's 90 minutes, in two profiles that
# each fit an afternoon of this 2-core machine (all of it in one profile takes about 4.5 hours: 43 of
# its 54 trainings took 3.5 hours of two workers). Both resume when interrupted: `run_all.py --profile
# NAME` resumes each run from its last finished epoch and skips finished runs. Their measured durations
# are in results/<profile>/summary.md.
#
# `synthetic_long`: the training-budget curve (V1, V2 alone and V2 distilled from V1's 10-epoch run,
# each trained for 10, 20 and 40 epochs over three seeds: does V2 only lack training at 10 epochs, does
# the distillation gain shrink with the budget?), V2's own recipe at 40 epochs against V2 with the
# shared recipe at 40, over the same three seeds, and the pruning control (each pruned variant's parent
# fine-tuned, unpruned, for the same 2 epochs). Per-run times of one worker beside another, measured in
# an earlier run: V1 for 20 / 40 epochs 26.9 / 55.1 min, V2 for 40 epochs 25.8; its 34 trainings take
# about 6 hours of two workers (resumable).
SYNTHETIC_LONG = replace(
    SYNTHETIC_PROFILE,
    name="synthetic_long",
    description="synthetic dataset, the synthetic profile's recipe: AP against the training budget (10 / 20 / 40 "
                "epochs) for V1, V2 alone and V2 distilled over three seeds, V2's own recipe at 40 epochs, and the "
                "pruning control (hours on a CPU; resumable)",
    seeds=(0, 1, 2), model_seeds=(0, 1, 2), ablation_swaps=(), v2_variants=(), widerface_teachers=(),
    budget_epochs=(20, 40), pruning_control=True,
    # V2's own recipe at the longest budget length, where its warm-up + cosine schedule has room
    student_own_preset="synthetic_cpu_v2_thesis", own_recipe_epochs=40,
)

# `synthetic_seeds`: all seven one-part swaps of V1 and both V2 variants, each over three seeds like V1
# itself (so every swap and variant gets a pooled verdict and V2 against V1 is pooled on both sides), the
# distillation from the WIDER FACE-trained ECA-CBAM teacher and V2 with its own recipe (the thesis's,
# scaled) over three seeds. Per-run times of one worker beside another, measured in an earlier run: V1
# 11.6-12.0 min, five swaps 7.0-9.2, ssh_grouped 4.0, V2 ultra 3.4, V2 ViT 5.2, V2 own recipe 3.3, so
# its 42 trainings take about 2.3 hours of two workers.
SYNTHETIC_SEEDS = replace(
    SYNTHETIC_PROFILE,
    name="synthetic_seeds",
    description="synthetic dataset, the synthetic profile's recipe: every one-part swap and V2 variant over three "
                "seeds, the WIDER FACE-teacher distillation and V2's own recipe (hours on a CPU; resumable)",
    seeds=(0, 1, 2), model_seeds=(0, 1, 2), ablation_swaps=None, v2_variants=None, widerface_teachers=None,
    student_own_preset="synthetic_cpu_v2_thesis", random_start_control=True,
)

PROFILES: dict[str, RunProfile] = {p.name: p for p in (SMOKE, SYNTHETIC_PROFILE, SYNTHETIC_LONG, SYNTHETIC_SEEDS, FULL)}


def get_profile(name: str) -> RunProfile:
    if name not in PROFILES:
        raise KeyError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]
