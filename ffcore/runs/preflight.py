"""The pre-flight of a study: what would stop its trainings, found in minutes rather than at epoch 10.

Cheap checks (`preflight_checks`, seconds; also run at the start of `ffcore study train`,
`ffcore study submit` and `run_all.py` for the `full` profile):

- the dataset: the training annotations parse, every listed training and validation image
  exists, a sample of each decodes, and the four evaluation .mat files load;
- the weights: the ImageNet backbone when a run initialises from it, and the shared weights of
  the WIDER FACE teacher and the reference detectors, naming every run that would be dropped
  without them (an error for WIDER FACE profiles: the study would silently lose rows);
- the device: torch's CUDA build, the NVIDIA driver, and what to install when they do not fit.

The trial (`trial_run`, `--steps N`): every job of the plan trained for two epochs of N steps,
then a validation pass over a few images, with the profile's own settings on the real device,
in a scratch results folder (never results/<profile>: a trial run must not make a real run
stale). It prints the measured images/s per model and the plan's duration with validation.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ffcore.runs.context import Study
from ffcore.runs.plan import PlannedRun, model_of_run, study_plan, unavailable_runs

DECODE_SAMPLE = 16         # images of each split decoded by the cheap checks
TRIAL_EPOCHS = 2           # the second epoch's rate is the one reported: the first pays for start-up
# The driver each CUDA major version of the torch wheels needs at least (NVIDIA's CUDA release notes,
# "minor version compatibility"): a CUDA 13 wheel on a 535 driver sees no GPU at all.
MINIMUM_DRIVER = {11: 450, 12: 525, 13: 580}


class PreflightError(RuntimeError):
    """The pre-flight found what would stop the study; the message lists every problem."""


@dataclass
class PreflightReport:
    lines: list[tuple[str, str, str]] = field(default_factory=list)   # (level, check, message)

    def add(self, level: str, check: str, message: str) -> None:
        self.lines.append((level, check, message))

    @property
    def errors(self) -> list[str]:
        return [f"{check}: {message}" for level, check, message in self.lines if level == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def text(self) -> str:
        mark = {"ok": "ok     ", "warning": "WARNING", "error": "ERROR  "}
        return "\n".join(f"[{mark[level]}] {check}: {message}" for level, check, message in self.lines)

    def raise_for_errors(self, what: str) -> None:
        if not self.ok:
            raise PreflightError(f"{what}: the pre-flight found {len(self.errors)} problem(s):\n  "
                                 + "\n  ".join(self.errors))


# ------------------------------------------------------------------------------- the dataset

def _spread(items: list, count: int) -> list:
    """`count` items spread evenly over the list (first and last included): a sample, reproducibly."""
    if len(items) <= count:
        return list(items)
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def check_dataset_files(data_root: Path, report: PreflightReport, sample: int = DECODE_SAMPLE) -> None:
    """Every listed image exists, a sample of each split decodes, the annotation and .mat files parse."""
    from ffcore.data.annotations import AnnotationFormatError
    from ffcore.data.datasets import MissingImagesError
    from ffcore.data.ground_truth import SETTINGS, GroundTruthError, load_ground_truth
    from ffcore.data.layout import LayoutError, WiderFaceLayout
    from ffcore.preprocess import ImageReadError, read_image
    from ffcore.runs.datasets import FULL_NEEDS

    try:
        layout = WiderFaceLayout.find(data_root, need=FULL_NEEDS)
    except LayoutError as exc:
        report.add("error", "dataset", str(exc))
        return
    try:
        train = layout.train_dataset(check_images=False)
    except AnnotationFormatError as exc:
        report.add("error", "training annotations", str(exc))
        train = None
    if train is not None:
        paths = [train.image_path(i) for i in range(len(train))]
        report.add("ok", "training annotations", f"{train.report.path} parses: {len(paths)} images")
        missing = [p for p in paths if not p.is_file()]
        if missing:
            report.add("error", "training images", f"{len(missing)} of {len(paths)} listed in {train.report.path} "
                                                   f"are missing: " + ", ".join(map(str, missing[:10]))
                       + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
        else:
            report.add("ok", "training images", f"all {len(paths)} listed images exist under {layout.train_images}")
        _decode_sample([p for p in paths if p.is_file()], sample, "training images", report, read_image,
                       ImageReadError)
    try:
        truth = load_ground_truth(layout.ground_truth_dir, settings=SETTINGS)
        index = layout.validation_index(check_images=False)
    except GroundTruthError as exc:
        report.add("error", "evaluation ground truth", str(exc))
        return
    report.add("ok", "evaluation ground truth", f"the four .mat files in {layout.ground_truth_dir} load: "
                                                f"{len(truth.names)} validation images listed")
    try:
        index.verify_images()
    except MissingImagesError as exc:
        report.add("error", "validation images", str(exc).replace("\n  ", " "))
    else:
        report.add("ok", "validation images", f"all {len(index)} listed images exist under {layout.val_images}")
    _decode_sample([e.image_path for e in index if e.image_path.is_file()], sample, "validation images", report,
                   read_image, ImageReadError)


def _decode_sample(paths: list[Path], sample: int, check: str, report: PreflightReport, read_image,
                   error_type) -> None:
    chosen = _spread(paths, sample)
    broken = []
    for path in chosen:
        try:
            read_image(path)
        except error_type as exc:
            broken.append(str(exc))
    if broken:
        report.add("error", check, f"{len(broken)} of {len(chosen)} sampled images do not decode: " + "; ".join(broken))
    elif chosen:
        report.add("ok", check, f"a sample of {len(chosen)} decodes")


# ------------------------------------------------------------------------------- the weights

def check_weights(study: Study, plan: list[PlannedRun], report: PreflightReport) -> None:
    from ffcore.checkpoint import CheckpointError
    from ffcore.models.loading import require_imagenet_backbone
    from ffcore.runs.training import run_train_config

    needing = [job.name for job in plan if run_train_config(study, job).pretrained_backbone is True]
    if needing:
        try:
            path = require_imagenet_backbone()
        except CheckpointError as exc:
            report.add("error", "ImageNet backbone", f"{exc} Needed by {len(needing)} run(s): {', '.join(needing)}")
        else:
            report.add("ok", "ImageNet backbone", f"{path} ({len(needing)} runs start from it)")
    dropped = unavailable_runs(study.profile)
    for run, why in dropped.items():
        # a synthetic profile goes on without them (its tables say so); a WIDER FACE study would lose rows
        level = "warning" if study.profile.is_synthetic else "error"
        report.add(level, "shared weights", f"run {run} would be dropped from the study: {why} "
                                            "(set FFCORE_SHARED to the folder holding weights/)")
    if not dropped:
        report.add("ok", "shared weights", "every WIDER FACE teacher and reference detector the study names is there")


# -------------------------------------------------------------------------------- the device

def nvidia_driver_version() -> str | None:
    """The NVIDIA driver's version from nvidia-smi, or None when there is no driver to ask."""
    if shutil.which("nvidia-smi") is None:
        return None
    done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                          capture_output=True, text=True, timeout=30)
    lines = done.stdout.split()
    return lines[0] if done.returncode == 0 and lines else None


def describe_cuda_mismatch(torch_cuda: str | None, driver: str | None) -> str:
    """Why torch sees no GPU, and what to install: the sentence the pre-flight and run_all.py print."""
    import torch

    if torch_cuda is None:
        return (f"torch {torch.__version__} is a CPU-only build: install a CUDA build of the same version "
                f"(pip install torch==<version> --index-url https://download.pytorch.org/whl/cu<NNN>)")
    major = int(torch_cuda.split(".")[0])
    needed = MINIMUM_DRIVER.get(major)
    wheel = f"torch {torch.__version__} is built for CUDA {torch_cuda}"
    if driver is None:
        return f"{wheel}, and no NVIDIA driver answers here (nvidia-smi not found or failing): no GPU is usable"
    if needed is not None and int(driver.split(".")[0]) < needed:
        return (f"{wheel}, which needs NVIDIA driver >= {needed}; this machine has {driver}. Install driver "
                f">= {needed}, or a torch build for the CUDA this driver supports (the 'CUDA Version' nvidia-smi "
                f"prints), e.g. pip install torch==<version> torchvision==<version> --index-url "
                f"https://download.pytorch.org/whl/cu126 (docs: 'Running the full study')")
    return f"{wheel} and driver {driver} is there, yet torch.cuda.is_available() is False (CUDA_VISIBLE_DEVICES?)"


def check_device(device: str, report: PreflightReport) -> None:
    import torch

    if device != "cuda":
        report.add("ok", "device", f"{device} (torch {torch.__version__}, {torch.get_num_threads()} threads)")
        return
    driver = nvidia_driver_version()
    if not torch.cuda.is_available():
        report.add("error", "device", describe_cuda_mismatch(torch.version.cuda, driver))
        return
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    report.add("ok", "device", f"{len(names)} GPU(s): {', '.join(names)}; driver {driver}, torch {torch.__version__} "
                               f"for CUDA {torch.version.cuda}")


# ------------------------------------------------------------------------------ cheap checks

def preflight_checks(study: Study, runs: list[str] | None = None, device: bool = True) -> PreflightReport:
    """The cheap checks for `study` (see the module docstring). `device=False` leaves the device out:
    a SLURM submission needs no GPU on the node it is made from."""
    report = PreflightReport()
    if study.profile.is_synthetic and not study.data_root.is_dir():
        report.add("ok", "dataset", f"{study.data_root} is generated on first use (synthetic profile)")
    else:
        check_dataset_files(study.data_root, report)
    check_weights(study, study_plan(study.profile, runs), report)
    if device:
        check_device(study.device, report)
    return report


# ---------------------------------------------------------------------------------- the trial

@dataclass
class ModelTiming:
    model: str
    images_per_second: float       # training, the trial's second epoch
    seconds_per_val_image: float   # the validation pass at the recipe's scale
    batch_size: int
    image_size: int
    kind: str = "train"            # a distillation also runs its teacher: timed apart from the model alone

    @property
    def label(self) -> str:
        return self.model if self.kind == "train" else f"{self.model} ({self.kind})"


def timing_key(job: PlannedRun) -> tuple[str, str]:
    return job.model, job.kind


class ScratchStudy(Study):
    """A study whose results go to a scratch folder instead of results/<profile>."""

    def __init__(self, study: Study, scratch: Path):
        super().__init__(profile=study.profile, data_root=study.data_root, device=study.device)
        self.scratch = Path(scratch)

    @property
    def results_root(self) -> Path:
        return self.scratch / self.profile.name


def trial_run(study: Study, scratch: Path, steps: int, val_images: int = 8, runs: list[str] | None = None,
              say=print) -> dict[tuple[str, str], ModelTiming]:
    """Train every job of the plan (or `runs` and their dependencies) for TRIAL_EPOCHS epochs of `steps`
    steps with the profile's settings into `scratch`, validate each model on `val_images` images;
    returns the timings per (model, kind of job)."""
    from ffcore.runs.training import ensure_run, run_train_config

    profile = replace(study.profile, epochs=TRIAL_EPOCHS, student_epochs=TRIAL_EPOCHS, finetune_epochs=TRIAL_EPOCHS,
                      budget_epochs=(), max_steps_per_epoch=steps, val_every=0)
    trial = ScratchStudy(replace(study, profile=profile), scratch)
    if trial.results_root.resolve() == study.results_root.resolve():
        raise ValueError(f"the trial's scratch folder {scratch} would put it in {study.results_root}, the study's own "
                         f"results, which it must never touch (nor empty): choose another --scratch")
    if trial.results_root.exists():
        shutil.rmtree(trial.results_root)   # a trial starts from nothing: no earlier trial is reused
    timings: dict[tuple[str, str], ModelTiming] = {}
    for job in study_plan(profile, runs):
        start = time.perf_counter()
        ensure_run(trial, job.name, force=False)
        rate = float(_history(trial, job.name)[-1]["images_per_s"])
        if timing_key(job) not in timings:
            config = run_train_config(study, job)
            validated = next((t for t in timings.values() if t.model == job.model), None)
            if validated is not None:
                per_image = validated.seconds_per_val_image    # the same detector validates alike
            elif job.kind == "prune":
                # a cut model is narrower than its parent: the parent's validation time bounds its own
                per_image = next(t for t in timings.values() if t.model == model_of_run(job.parent)).seconds_per_val_image
            else:
                per_image = _time_validation(trial, job, config.val_scale, val_images)
            timings[timing_key(job)] = ModelTiming(job.model, rate, per_image, config.batch_size, config.image_size,
                                                   job.kind)
        say(f"  {job.name}: {TRIAL_EPOCHS} x {steps} steps in {time.perf_counter() - start:.1f} s, "
            f"{rate:.1f} images/s in its second epoch")
    return timings


def _history(study: Study, run: str) -> list[dict]:
    import csv

    with open(study.run_dir(run) / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _time_validation(study: Study, job: PlannedRun, scale, images: int) -> float:
    """Seconds per validation image of the trained trial model, at the recipe's validation scale
    (the first image is run once before timing: it pays for the device's start-up)."""
    import torch

    from ffcore.data.layout import WiderFaceLayout
    from ffcore.eval.inference import detect_image, parse_scale
    from ffcore.models import load_pretrained
    from ffcore.preprocess import read_image

    model = load_pretrained(model_of_run(job.name), study.checkpoint_path(job.name)).to(study.device).eval()
    entries = list(WiderFaceLayout.find(study.data_root, need=("val",)).validation_index())[:images + 1]
    scale = parse_scale(scale)
    with torch.no_grad():
        detect_image(model, read_image(entries[0].image_path), scale=scale, device=study.device)
        start = time.perf_counter()
        for entry in entries[1:]:
            detect_image(model, read_image(entry.image_path), scale=scale, device=study.device)
        if study.device == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / max(1, len(entries) - 1)


@dataclass
class PlanEstimate:
    rows: list[dict]               # per run: run, model, epochs, training h, validation h
    training_hours: float
    validation_hours: float
    critical_path_hours: float     # the longest chain of runs that wait for each other
    critical_path: list[str]

    @property
    def hours(self) -> float:
        return self.training_hours + self.validation_hours


def validations_of(epochs: int, val_every: int) -> int:
    """How many validation passes the trainer makes: every `val_every` epochs, and after the last."""
    if val_every <= 0:
        return 0
    return epochs // val_every + (1 if epochs % val_every else 0)


def estimate_plan(study: Study, timings: dict[tuple[str, str], ModelTiming], runs: list[str] | None = None) -> PlanEstimate:
    """The plan's duration from measured rates: epochs x training images / images/s, plus validations x
    validation images x seconds per image; runs of a model the trial did not time are left out (listed)."""
    from ffcore.data.layout import WiderFaceLayout
    from ffcore.runs.training import run_train_config

    layout = WiderFaceLayout.find(study.data_root, need=("train", "val"))
    train_images = len(layout.train_dataset(check_images=False))
    val_images = len(layout.validation_index(check_images=False))
    plan = study_plan(study.profile, runs)
    rows, hours_of = [], {}
    for job in plan:
        timing = timings.get(timing_key(job))
        if timing is None:
            continue
        config = run_train_config(study, job)
        steps = train_images // config.batch_size or 1
        if study.profile.max_steps_per_epoch:
            steps = min(steps, study.profile.max_steps_per_epoch)
        train_h = job.epochs * steps * config.batch_size / timing.images_per_second / 3600
        val_h = validations_of(job.epochs, config.val_every) * val_images * timing.seconds_per_val_image / 3600
        hours_of[job.name] = train_h + val_h
        rows.append({"run": job.name, "model": job.model, "epochs": job.epochs, "training h": train_h,
                     "validations": validations_of(job.epochs, config.val_every), "validation h": val_h})
    chain = _critical_path(plan, hours_of)
    return PlanEstimate(rows, sum(r["training h"] for r in rows), sum(r["validation h"] for r in rows),
                        sum(hours_of[r] for r in chain), chain)


def _critical_path(plan: list[PlannedRun], hours: dict[str, float]) -> list[str]:
    longest: dict[str, tuple[float, list[str]]] = {}
    for job in plan:   # dependency order
        before = max((longest[d] for d in job.depends_on if d in longest), default=(0.0, []), key=lambda x: x[0])
        longest[job.name] = (before[0] + hours.get(job.name, 0.0), [*before[1], job.name])
    return max(longest.values(), key=lambda x: x[0])[1] if longest else []


def _duration(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.1f} min"


def describe_estimate(study: Study, timings: dict[tuple[str, str], ModelTiming], estimate: PlanEstimate) -> str:
    profile = study.profile
    lines = [f"measured on {study.device} with profile {profile.name}'s settings (the second of {TRIAL_EPOCHS} "
             f"epochs; a few steps include the loader's start-up, so these rates are lower bounds):",
             f"  {'model':<34} {'images/s':>9} {'batch':>6} {'size':>5} {'s/val image':>12}"]
    for timing in timings.values():
        lines.append(f"  {timing.label:<34} {timing.images_per_second:9.1f} {timing.batch_size:6d} "
                     f"{timing.image_size:5d} {timing.seconds_per_val_image:12.3f}")
    epochs = sum(row["epochs"] for row in estimate.rows)
    lines.append(f"ETA of the plan ({len(estimate.rows)} runs, {epochs} epochs): training "
                 f"{_duration(estimate.training_hours)} + validation {_duration(estimate.validation_hours)} = "
                 f"{_duration(estimate.hours)} of one device ({estimate.hours / 24:.2f} device-days), one run after "
                 f"another; the longest chain ({' -> '.join(estimate.critical_path)}) takes "
                 f"{_duration(estimate.critical_path_hours)}, the least any number of devices can do")
    return "\n".join(lines)


def run_preflight(study: Study, runs: list[str] | None = None, steps: int = 0, scratch: Path | None = None,
                  val_images: int = 8, check_device: bool = True, say=print) -> int:
    """`ffcore study preflight`: the cheap checks, then the trial when `steps`; returns the exit code."""
    from ffcore.runs.datasets import prepare_dataset

    if study.profile.is_synthetic:
        prepare_dataset(study.profile, study.data_root)
    report = preflight_checks(study, runs, device=check_device)
    say(report.text())
    if not report.ok:
        say(f"pre-flight: {len(report.errors)} problem(s); fix them before training (each line above names it)")
        return 1
    if not steps:
        say("pre-flight: the cheap checks pass; `--steps 2` also trains every job briefly and estimates the plan")
        return 0
    scratch = Path(scratch) if scratch else _default_scratch()
    say(f"trial: every job for {TRIAL_EPOCHS} epochs of {steps} steps in {scratch / study.profile.name} "
        f"(results/{study.profile.name} is not touched)")
    timings = trial_run(study, scratch, steps, val_images, runs, say=say)
    say(describe_estimate(study, timings, estimate_plan(study, timings, runs)))
    return 0


def _default_scratch() -> Path:
    from ffcore.paths import results_dir

    return results_dir() / "preflight"

