"""The run catalogue of a study: which trainings a profile has, how each is named, what it needs.

A run lives in results/<profile>/checkpoints/<run>/ and its name says what was trained:

    featherface_v1, featherface_v1_ssh_grouped, ...     a registered model, seed 0
    featherface_v2_seed1                                the same recipe with training seed 1 (V2 alone and
                                                        distilled over the profile's `seeds`; V1, its swaps
                                                        and V2's variants over its `model_seeds`)
    featherface_v2_distilled[_seed1]                    distilled from the profile's teacher (V1)
    featherface_v2_distilled_eca_cbam_widerface         distilled from the WIDER FACE-trained ECA-CBAM
    featherface_v2_distilled_v1_widerface               distilled from the released V1 (trained on WIDER FACE)
    featherface_v2_pruned20                             pruned from the trained parent, then fine-tuned
    featherface_v2_pruned20_not_finetuned               pruned from the trained parent only (made by the
                                                        same job as featherface_v2_pruned20)
    featherface_v2_finetuned_unpruned                   the pruning control: the trained parent fine-tuned,
                                                        unpruned, exactly as featherface_v2_pruned20 is
    featherface_v1_ep40, featherface_v2_distilled_ep20  the training-budget curve: the same recipe for
                                                        another length (the profile's `budget_epochs`)
    featherface_v2_own_recipe[_seed1]                   V2 with its own recipe (the profile's
                                                        `student_own_preset`) instead of the shared one

V1 and its one-part swaps train with the profile's `train_preset` for `epochs`; V2 alone,
V2 distilled (every teacher) and the V2 variants with `student_preset` for
`student_epochs`, so each comparison changes only the factor it studies. The modifiers of a
name come in this order: `<model>[_random_start][_distilled[_<teacher>]][_own_recipe][_ep<N>]
[_finetuned_unpruned][_not_finetuned][_seed<K>]`.

This module only names and orders runs (`study_plan`); nothing here trains or reads a
checkpoint. It sits below the modules that train (`ffcore.runs.training`) and report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ffcore.runs.profiles import RunProfile

DISTILLED_SUFFIX = "_distilled"
NOT_FINETUNED_SUFFIX = "_not_finetuned"
# the pruning control: the unpruned parent fine-tuned exactly like its pruned variant
UNPRUNED_FINETUNE_SUFFIX = "_finetuned_unpruned"
OWN_RECIPE_SUFFIX = "_own_recipe"
# V2 trained from random weights, as V2-ViT is (no ImageNet file fits its backbone): the control that
# separates what the ViT parts change from what the missing ImageNet start changes
RANDOM_START_SUFFIX = "_random_start"
_SEED = re.compile(r"^(?P<base>.+)_seed(?P<seed>\d+)$")
_EPOCHS = re.compile(r"^(?P<base>.+)_ep(?P<epochs>\d+)$")
BASELINE = "featherface_v1"
# V2's registered variants train with the student recipe (compared with V2, not with V1).
V2_VARIANTS = ("featherface_v2_ultra", "featherface_v2_vit")
TRAINED_ON_WIDERFACE = "WIDER FACE (shared weights)"


@dataclass(frozen=True)
class Teacher:
    """A distillation teacher: a registered model and where its weights come from."""

    model: str
    label: str
    shared_weights: tuple[str, ...] | None = None   # path inside the shared folder; None: trained in the study
    run: str | None = None                          # the study run that trains it (shared_weights is None)

    def shared_path(self) -> Path | None:
        from ffcore.paths import shared_dir

        return None if self.shared_weights is None else shared_dir().joinpath(*self.shared_weights)


# The FeatherFace V1 the paper's authors' code trained on WIDER FACE (the released file; see the
# shared folder's README): a real teacher, a real detector and the anchor of the full profile.
RELEASED_V1_FILE = ("weights", "featherface_v1_widerface.pth")
RELEASED_V1_TAG = "v1_widerface"
RELEASED_V1_RUN = BASELINE + "_widerface"

# suffix after `_distilled_` -> teacher; the profile's teacher (no suffix) is trained in notebook 01,
# or is the released V1 where the profile's `teacher_weights` is "released"
WIDERFACE_TEACHERS: dict[str, Teacher] = {
    "eca_cbam_widerface": Teacher("featherface_eca_cbam", "ECA-CBAM FeatherFace trained on WIDER FACE",
                                  ("weights", "featherface_eca_cbam_widerface.pth")),
    RELEASED_V1_TAG: Teacher(BASELINE, "FeatherFace V1 as released, trained on WIDER FACE", RELEASED_V1_FILE),
}
TEACHER_WEIGHTS = ("trained", "released")     # the choices of a profile's `teacher_weights`

# Real detectors evaluated beside the study's runs: run name -> (model, weights in the shared folder).
REFERENCE_RUNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "retinaface_mnet025_widerface": ("retinaface_mnet025", ("weights", "retinaface_mnet025_widerface.pth")),
    "featherface_eca_cbam_widerface": ("featherface_eca_cbam", ("weights", "featherface_eca_cbam_widerface.pth")),
    RELEASED_V1_RUN: (BASELINE, RELEASED_V1_FILE),
}


# ------------------------------------------------------------------------------------ names

def seeded_run(run: str, seed: int) -> str:
    """The run name for a training seed (seed 0 keeps the plain name)."""
    return run if seed == 0 else f"{run}_seed{seed}"


def offset_run(profile: RunProfile, run: str, seed: int = 0) -> str:
    """The profile's run of `run` (a model or distilled run name without a seed) for its `seed`-th
    training seed, shifted by the profile's `seed_offset`: `featherface_v1` with offset 100 is
    `featherface_v1_seed100`, so a run with disjoint seeds never reuses (or overwrites) another's."""
    if _SEED.match(run):
        raise ValueError(f"offset_run takes a run name without a seed, got {run!r}")
    return seeded_run(run, seed + profile.seed_offset)


def split_seed(run: str) -> tuple[str, int]:
    match = _SEED.match(run)
    return (match["base"], int(match["seed"])) if match else (run, 0)


def budget_run(run: str, epochs: int) -> str:
    """The run of the training-budget curve: `run` (without a seed) trained for `epochs`."""
    return f"{run}_ep{epochs}"


def _modifiers(run: str) -> tuple[str, bool, int | None]:
    """(the name without its seed, stage, recipe and budget modifiers: `<model>[_distilled[_<teacher>]]`,
    trained with the student's own recipe, the budget run's epochs or None) of a run name."""
    base = split_seed(run)[0].removesuffix(NOT_FINETUNED_SUFFIX).removesuffix(UNPRUNED_FINETUNE_SUFFIX)
    match = _EPOCHS.match(base)
    base = match["base"] if match else base
    return base.removesuffix(OWN_RECIPE_SUFFIX), base.endswith(OWN_RECIPE_SUFFIX), int(match["epochs"]) if match else None


def run_epochs(run: str) -> int | None:
    """The training length a budget run's name states (`featherface_v1_ep40_seed1` -> 40), else None."""
    return _modifiers(run)[2]


def is_own_recipe(run: str) -> bool:
    return _modifiers(run)[1]


def is_unpruned_finetune(run: str) -> bool:
    return split_seed(run)[0].endswith(UNPRUNED_FINETUNE_SUFFIX)


def model_of_run(run: str) -> str:
    """Registry name of the model a run trains (`featherface_v2_distilled_seed1` -> `featherface_v2`)."""
    if run in REFERENCE_RUNS:
        return REFERENCE_RUNS[run][0]
    base = _modifiers(run)[0]
    base = base.split(DISTILLED_SUFFIX)[0] if DISTILLED_SUFFIX in base else base
    return base.removesuffix(RANDOM_START_SUFFIX)


def is_random_start(run: str) -> bool:
    """Whether the run trains its model from random weights rather than the ImageNet backbone."""
    return _modifiers(run)[0].split(DISTILLED_SUFFIX)[0].endswith(RANDOM_START_SUFFIX)


def teacher_tag(run: str) -> str | None:
    """The teacher a distilled run's name gives (`eca_cbam_widerface`; "" for the profile's own
    teacher); None for a supervised run."""
    base = _modifiers(run)[0]
    return base.split(DISTILLED_SUFFIX, 1)[1].removeprefix("_") if DISTILLED_SUFFIX in base else None


def teacher_of_run(profile: RunProfile, run: str) -> Teacher | None:
    """The teacher of a distilled run (None for a supervised run)."""
    tag = teacher_tag(run)
    if tag is None:
        return None
    if not tag and uses_released_teacher(profile):
        return WIDERFACE_TEACHERS[RELEASED_V1_TAG]
    if not tag:
        return Teacher(profile.teacher, f"{profile.teacher} trained in this study",
                       run=offset_run(profile, profile.teacher))
    if tag not in WIDERFACE_TEACHERS:
        raise KeyError(f"run {run!r}: unknown teacher {tag!r}; known: {', '.join(WIDERFACE_TEACHERS)}")
    return WIDERFACE_TEACHERS[tag]


def uses_released_teacher(profile: RunProfile) -> bool:
    """Whether the profile's own distillation (`<student>_distilled`) learns from the released V1
    (`teacher_weights = "released"`) rather than from the V1 the study trains ("trained")."""
    if profile.teacher_weights not in TEACHER_WEIGHTS:
        raise ValueError(f"profile {profile.name!r}: teacher_weights {profile.teacher_weights!r} is not one of "
                         f"{', '.join(TEACHER_WEIGHTS)}")
    if profile.teacher_weights == "trained":
        return False
    released = WIDERFACE_TEACHERS[RELEASED_V1_TAG]
    if profile.teacher != released.model:
        raise ValueError(f"profile {profile.name!r}: teacher_weights 'released' is the released {released.model}, "
                         f"but the profile's teacher is {profile.teacher!r}")
    return True


def teacher_display_name(profile: RunProfile) -> str:
    """The name legends give the profile's own teacher: the released V1's run or the teacher model."""
    return RELEASED_V1_RUN if uses_released_teacher(profile) else profile.teacher


def pruned_parent(model: str) -> str | None:
    """The model a registered pruned variant is cut from (None when `model` is not one)."""
    from ffcore.pruning import DEFAULT_RATIO, PRUNABLE_BASES

    parents = {f"{base}_pruned{round(DEFAULT_RATIO * 100)}": base for base in PRUNABLE_BASES}
    return parents.get(model)


def recipe(profile: RunProfile, model: str) -> tuple[str, int]:
    """(training preset, epochs) of a model in this study: the student recipe for V2 and its variants."""
    if model == profile.student or model in V2_VARIANTS:
        return profile.student_preset, profile.student_epochs
    return profile.train_preset, profile.epochs


def trained_on(profile: RunProfile, dataset: str, run: str) -> str:
    """What a run's weights were trained on, for table columns and legends."""
    return TRAINED_ON_WIDERFACE if run in REFERENCE_RUNS else f"{dataset} ({profile.name} profile)"


# ------------------------------------------------------------------------ what a profile trains

def one_part_swaps(base: str = BASELINE) -> list[str]:
    """Registered variants declared as one-part swaps of `base`, in declaration order."""
    from ffcore.models import list_models
    from ffcore.models.zoo import ONE_PART_SWAPS

    registered = set(list_models())
    return [variant for variant, (parent, _) in ONE_PART_SWAPS.items() if parent == base and variant in registered]


def v2_variants() -> list[str]:
    from ffcore.models import list_models

    return [m for m in V2_VARIANTS if m in list_models()]


def study_swaps(profile: RunProfile) -> list[str]:
    """The one-part swaps of V1 this study trains (the profile's `ablation_swaps`, else all declared)."""
    return profile.chosen("ablation_swaps", one_part_swaps())


def study_v2_variants(profile: RunProfile) -> list[str]:
    """V2's variants this study trains (the profile's `v2_variants`, else all registered)."""
    return profile.chosen("v2_variants", v2_variants())


def study_pruned_variants(profile: RunProfile) -> list[str]:
    """Registered pruned variants whose parent this study trains (V1, V2)."""
    from ffcore.models import list_models

    trained = {profile.teacher, profile.student}
    return [m for m in list_models() if pruned_parent(m) in trained]


def widerface_teacher_runs(profile: RunProfile) -> list[str]:
    """Distillation runs from the WIDER FACE-trained teachers whose model and weights are available."""
    from ffcore.models import list_models

    chosen = profile.chosen("widerface_teachers", list(WIDERFACE_TEACHERS))
    if uses_released_teacher(profile):
        # the profile's own distillation already learns from the released V1: the same run, not twice
        chosen = [tag for tag in chosen if tag != RELEASED_V1_TAG]
    return [offset_run(profile, profile.student + DISTILLED_SUFFIX + "_" + tag) for tag in chosen
            if WIDERFACE_TEACHERS[tag].model in list_models() and WIDERFACE_TEACHERS[tag].shared_path().is_file()]


def reference_runs() -> list[str]:
    """The WIDER FACE-trained reference detectors whose model is registered and whose weights exist."""
    from ffcore.models import list_models
    from ffcore.paths import shared_dir

    return [run for run, (model, weights) in REFERENCE_RUNS.items()
            if model in list_models() and shared_dir().joinpath(*weights).is_file()]


def unavailable_runs(profile: RunProfile) -> dict[str, str]:
    """{run: why} for the WIDER FACE-teacher distillations and reference detectors the profile asks for
    but cannot have here (model not registered, or its shared weights missing): the runs that
    `widerface_teacher_runs` and `reference_runs` leave out, so whoever prints a plan can name them."""
    from ffcore.models import list_models
    from ffcore.paths import shared_dir

    registered = set(list_models())
    dropped = {}
    for tag in profile.chosen("widerface_teachers", list(WIDERFACE_TEACHERS)):
        teacher = WIDERFACE_TEACHERS[tag]
        run = offset_run(profile, profile.student + DISTILLED_SUFFIX + "_" + tag)
        if teacher.model not in registered:
            dropped[run] = f"teacher model {teacher.model} is not registered"
        elif not teacher.shared_path().is_file():
            dropped[run] = f"teacher weights {teacher.shared_path()} are missing"
    for run, (model, weights) in REFERENCE_RUNS.items():
        if model not in registered:
            dropped[run] = f"model {model} is not registered"
        elif not shared_dir().joinpath(*weights).is_file():
            dropped[run] = f"reference weights {shared_dir().joinpath(*weights)} are missing"
    return dropped


# ------------------------------------------------------------------------------------- the plan

@dataclass(frozen=True)
class PlannedRun:
    """One training job of a study: what it trains, with which recipe, after which other runs."""

    name: str
    kind: str                          # "train" | "distill" | "prune" (prune, keep the cut model, fine-tune)
                                       # | "finetune" (fine-tune the trained parent, unpruned: the control)
    model: str
    preset: str
    epochs: int
    seed: int                          # training seed (profile seed + the run's seed index)
    depends_on: tuple[str, ...] = ()   # runs that must be complete first (the teacher, the pruned parent)
    teacher: Teacher | None = None
    parent: str | None = None          # pruned and control runs: the trained parent run

    @property
    def companions(self) -> tuple[str, ...]:
        """Other run folders this job writes (a pruned job keeps the model before fine-tuning)."""
        if self.kind != "prune":
            return ()
        base, seed = split_seed(self.name)
        return (seeded_run(base + NOT_FINETUNED_SUFFIX, seed),)

    def describe(self) -> str:
        after = f" after {', '.join(self.depends_on)}" if self.depends_on else ""
        what = {"train": "train", "distill": f"distil from {self.teacher.label if self.teacher else '?'}",
                "prune": f"prune {self.parent} and fine-tune",
                "finetune": f"fine-tune {self.parent} unpruned"}[self.kind]
        return f"{self.name}: {what}, {self.preset} x {self.epochs} epochs, seed {self.seed}{after}"


def planned_run(profile: RunProfile, run: str) -> PlannedRun:
    """The job that produces `run` (a `_not_finetuned` name maps to its pruned job)."""
    run = job_name(run)
    if run in REFERENCE_RUNS:
        raise KeyError(f"{run!r} is a reference detector with shared weights; it is not trained")
    model = model_of_run(run)
    seed_index = split_seed(run)[1]
    if seed_index < profile.seed_offset:
        raise ValueError(f"run {run!r} has training seed {seed_index}, below the profile's seed_offset "
                         f"{profile.seed_offset}: name it {offset_run(profile, split_seed(run)[0])!r} (offset_run) so "
                         f"its seed is shifted like every other run's")
    seed = profile.seed + seed_index
    parent = pruned_parent(model)
    if parent is not None:
        preset, _ = recipe(profile, parent)
        parent_run = offset_run(profile, parent)
        return PlannedRun(run, "prune", model, preset, profile.finetune_epochs, seed, depends_on=(parent_run,),
                          parent=parent_run)
    if is_unpruned_finetune(run):
        # the same fine-tuning as the pruned variant's (recipe, length, seed), from the same parent
        preset, _ = recipe(profile, model)
        parent_run = offset_run(profile, model)
        return PlannedRun(run, "finetune", model, preset, profile.finetune_epochs, seed, depends_on=(parent_run,),
                          parent=parent_run)
    preset, epochs = recipe(profile, model)
    if is_own_recipe(run):
        if profile.student_own_preset is None:
            raise ValueError(f"run {run!r} trains with the student's own recipe, but profile {profile.name!r} "
                             f"names none (its student_own_preset is None)")
        preset = profile.student_own_preset
    epochs = run_epochs(run) or epochs
    teacher = teacher_of_run(profile, run)
    if teacher is not None:
        return PlannedRun(run, "distill", model, preset, epochs, seed,
                          depends_on=(teacher.run,) if teacher.run else (), teacher=teacher)
    return PlannedRun(run, "train", model, preset, epochs, seed)


def job_name(run: str) -> str:
    """The job that writes `run`: itself, or for `<variant>_not_finetuned[_seedN]` the pruned job."""
    base, seed = split_seed(run)
    return seeded_run(base.removesuffix(NOT_FINETUNED_SUFFIX), seed) if base.endswith(NOT_FINETUNED_SUFFIX) else run


def planned_runs(profile: RunProfile) -> list[str]:
    """Every training of a whole run of the five notebooks, in the order the notebooks need them
    (names carry the profile's `seed_offset`)."""
    runs = [offset_run(profile, profile.teacher, seed) for seed in profile.model_seeds]
    runs += [offset_run(profile, profile.student, seed) for seed in profile.seeds]
    runs += [offset_run(profile, profile.student + DISTILLED_SUFFIX, seed) for seed in profile.seeds]
    runs += widerface_teacher_runs(profile)
    runs += [offset_run(profile, model, seed) for model in (*study_swaps(profile), *study_v2_variants(profile))
             for seed in profile.model_seeds]
    runs += [offset_run(profile, model) for model in study_pruned_variants(profile)]
    runs += pruning_control_runs(profile)
    runs += own_recipe_runs(profile)
    runs += random_start_runs(profile)
    runs += [run for epochs in profile.budget_epochs for run in budget_runs(profile, epochs)]
    return runs


def budget_arms(profile: RunProfile) -> list[str]:
    """The arms of the training-budget curve (names without seed or length): V1, V2 alone, V2 distilled."""
    return [profile.teacher, profile.student, profile.student + DISTILLED_SUFFIX]


def budget_runs(profile: RunProfile, epochs: int) -> list[str]:
    """The budget curve's runs at `epochs`: each arm over its own seeds (V1 over `model_seeds`, V2 alone
    and distilled over `seeds`), so every length is pooled like the profile's own; the teacher of the
    distilled arm stays the profile's teacher run, so only the student's length changes."""
    return [offset_run(profile, budget_run(arm, epochs), seed) for arm in budget_arms(profile)
            if epochs != recipe(profile, model_of_run(arm))[1]   # that length is the arm's own run
            for seed in (profile.model_seeds if arm == profile.teacher else profile.seeds)]


def own_recipe_base(profile: RunProfile) -> str:
    """The own-recipe runs' name without a seed: `<student>_own_recipe`, with `_ep<N>` when the profile
    trains it for another length than the student's (`own_recipe_epochs`, one of its budget lengths)."""
    epochs = profile.own_recipe_epochs
    base = profile.student + OWN_RECIPE_SUFFIX
    if epochs is None or epochs == profile.student_epochs:
        return base
    if epochs not in profile.budget_epochs:
        raise ValueError(f"profile {profile.name!r}: own_recipe_epochs {epochs} must be the student's length "
                         f"({profile.student_epochs}) or one of its budget_epochs {profile.budget_epochs}, so V2 "
                         "with the shared recipe is trained for as long")
    return budget_run(base, epochs)


def own_recipe_reference(profile: RunProfile) -> str:
    """What V2's own recipe is compared with: V2 with the shared recipe for the same length."""
    epochs = profile.own_recipe_epochs
    if epochs is None or epochs == profile.student_epochs:
        return profile.student
    return budget_run(profile.student, epochs)


def own_recipe_runs(profile: RunProfile) -> list[str]:
    """V2 trained with its own recipe over `model_seeds` (none when the profile names no such preset)."""
    if profile.student_own_preset is None:
        return []
    return [offset_run(profile, own_recipe_base(profile), seed) for seed in profile.model_seeds]


def random_start_runs(profile: RunProfile) -> list[str]:
    """V2 from random weights over `model_seeds`, where the profile trains V2-ViT (which starts so) and asks
    for the control (`random_start_control`)."""
    if not profile.random_start_control or "featherface_v2_vit" not in study_v2_variants(profile):
        return []
    return [offset_run(profile, profile.student + RANDOM_START_SUFFIX, seed) for seed in profile.model_seeds]


def pruning_control_runs(profile: RunProfile) -> list[str]:
    """The unpruned parent of each pruned variant, fine-tuned like it (when the profile asks for the control)."""
    if not profile.pruning_control:
        return []
    return [offset_run(profile, pruned_parent(variant) + UNPRUNED_FINETUNE_SUFFIX)
            for variant in study_pruned_variants(profile)]


def study_plan(profile: RunProfile, only: list[str] | None = None) -> list[PlannedRun]:
    """The profile's jobs in dependency order (a run comes after what it depends on). `only` narrows
    the plan to those runs (names checked against the plan) and whatever they depend on."""
    jobs = {run: planned_run(profile, run) for run in planned_runs(profile)}
    if only:
        unknown = [run for run in only if job_name(run) not in jobs]
        if unknown:
            raise KeyError(f"run(s) {', '.join(unknown)} are not in profile {profile.name!r}'s plan; "
                           f"its runs: {', '.join(jobs)}")
        wanted: set[str] = set()
        stack = [job_name(run) for run in only]
        while stack:
            run = stack.pop()
            if run not in wanted:
                wanted.add(run)
                stack.extend(jobs[run].depends_on)
        jobs = {run: job for run, job in jobs.items() if run in wanted}
    return _dependency_order(jobs)


def _dependency_order(jobs: dict[str, PlannedRun]) -> list[PlannedRun]:
    ordered: list[PlannedRun] = []
    placed: set[str] = set()
    pending = list(jobs.values())
    while pending:
        ready = [job for job in pending if all(dep in placed or dep not in jobs for dep in job.depends_on)]
        # the longest first (stable otherwise): side-by-side workers then finish on the short ones
        ready.sort(key=lambda job: -job.epochs)
        if not ready:
            raise ValueError("the plan's dependencies form a cycle: " + ", ".join(j.name for j in pending))
        for job in ready:
            ordered.append(job)
            placed.add(job.name)
        pending = [job for job in pending if job.name not in placed]
    return ordered


def dependency_depths(plan: list[PlannedRun]) -> dict[str, int]:
    """0 for a run that needs no other run of the plan, else 1 + the deepest of its dependencies."""
    depth: dict[str, int] = {}
    for job in plan:   # dependency order: dependencies come first
        depth[job.name] = 1 + max((depth[d] for d in job.depends_on if d in depth), default=-1)
    return depth
