"""The questions a profile's trainings answer, what each costs, and the smallest difference each can establish.

A study is designed by its questions: V2 against V1, the distillation gain, each one-part swap
against V1 (the placebo among them measures the noise floor), each V2 variant against V2, V2's
own recipe against the shared one. `question_budget(profile)` lists them with the seeds of each
arm, the runs and GPU-hours each adds to the plan (a run already paid for by an earlier question is
not counted twice), and the half-width of the 95 % interval a comparison at that many seeds would
get from the seed spread alone: a difference smaller than that is "inside the noise" however real.

The seed spreads are measured, not assumed: the released FeatherFace V1's two WIDER FACE trainings
(`reference_measurements.json`, with where each AP was printed) differ by |a - b| points per
setting, which estimates the standard deviation of a paired difference of two arms (each the sd of
one run times sqrt 2) from a single pair, so loosely; and the synthetic study's per-seed differences
(`results/synthetic_seeds/pooled_recomputed.csv`, written by `ffcore study repool` from that run's
committed tables): the comparison's own spread where that profile ran it, else the median over its
comparisons. The half-width is t(0.975, n - 1) x sd / sqrt(n) for n seed pairs (the seed part of
`ffcore.eval.seed_intervals`; the image part of WIDER FACE's 3,226 validation images is left out).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ffcore.paths import REPO_ROOT
from ffcore.runs.plan import (DISTILLED_SUFFIX, RANDOM_START_SUFFIX, own_recipe_base, random_start_runs, own_recipe_reference, planned_runs, split_seed,
                               study_plan, study_swaps, study_v2_variants, widerface_teacher_runs)
from ffcore.runs.profiles import RunProfile

SETTINGS = ("easy", "medium", "hard")
MEASUREMENTS = Path(__file__).with_name("reference_measurements.json")
SYNTHETIC_SPREADS = REPO_ROOT / "results" / "synthetic_seeds" / "pooled_recomputed.csv"


@dataclass(frozen=True)
class Question:
    """One comparison the thesis states: `arm` against `reference` (run names without their seed)."""

    text: str
    arm: str
    reference: str

    @property
    def comparison(self) -> str:
        return f"{self.arm} vs {self.reference}"


def reference_measurements(path: Path = MEASUREMENTS) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FileNotFoundError(f"{path}: the reference measurements the study design reads ({exc})") from exc


def widerface_seed_spread(measurements: dict | None = None) -> dict[str, float]:
    """setting -> |a - b| (AP points) of the released V1's two WIDER FACE trainings."""
    trainings = (measurements or reference_measurements())["widerface_v1_trainings"]
    if len(trainings) != 2:
        raise ValueError(f"{MEASUREMENTS}: widerface_v1_trainings should hold the two trainings, has {len(trainings)}")
    a, b = (t["ap_percent"] for t in trainings)
    return {s: round(abs(a[s] - b[s]), 2) for s in SETTINGS}


def synthetic_seed_spreads(path: Path = SYNTHETIC_SPREADS) -> pd.DataFrame | None:
    """(comparison, setting) -> sd over seeds of the per-seed paired difference; None when not committed."""
    from ffcore.report.tables import read_table_csv

    if not Path(path).is_file():
        return None
    table = read_table_csv(path)
    return table[np.isfinite(table["seed sd"].astype(float))][["comparison", "setting", "seed sd"]]


def study_questions(profile: RunProfile) -> list[Question]:
    """The comparisons a profile's notebooks state, in the order their runs are paid for."""
    from ffcore.models.zoo import PLACEBO_SWAPS

    student, teacher = profile.student, profile.teacher
    questions = [Question("Is V2 lower than V1?", student, teacher),
                 Question("Does distillation from V1 change V2?", student + DISTILLED_SUFFIX, student)]
    questions += [Question(f"Distillation from a WIDER FACE teacher: {split_seed(run)[0]}",
                           split_seed(run)[0], student) for run in widerface_teacher_runs(profile)]
    questions += [Question(("Placebo, the noise floor: " if swap in PLACEBO_SWAPS else "Swap: ")
                           + swap, swap, teacher) for swap in study_swaps(profile)]
    questions += [Question(f"V2 variant: {variant}", variant, student)
                  for variant in study_v2_variants(profile)]
    if random_start_runs(profile):
        questions.append(Question("V2-ViT against V2 from random weights (both without ImageNet)", "featherface_v2_vit",
                                  student + RANDOM_START_SUFFIX))
    if profile.student_own_preset is not None:
        questions.append(Question("Does V2's own recipe change V2?", own_recipe_base(profile),
                                  own_recipe_reference(profile)))
    return questions


def smallest_difference(sd: float, pairs: int) -> float:
    """Half-width (points) of the 95 % t interval over `pairs` seed pairs whose paired differences have sd `sd`."""
    if pairs < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, pairs - 1) * sd / np.sqrt(pairs))


def question_budget(profile: RunProfile, images_per_second: float, train_images: int) -> pd.DataFrame:
    """One row per question: seeds per arm, the runs and GPU-hours it adds, the smallest difference it can
    establish from each measured seed spread (see the module docstring); then the runs no question
    compares (pruned variants, the budget curve) and the total."""
    jobs = {job.name: job for job in study_plan(profile)}
    by_base: dict[str, list[str]] = {}
    for run in planned_runs(profile):
        by_base.setdefault(split_seed(run)[0], []).append(run)
    widerface = widerface_seed_spread()
    synthetic = synthetic_seed_spreads()

    def hours(runs) -> float:
        return sum(jobs[run].epochs for run in runs) * train_images / images_per_second / 3600

    def synthetic_sd(question: Question, setting: str) -> float:
        if synthetic is None or synthetic.empty:
            return float("nan")
        mine = synthetic[(synthetic["comparison"] == question.comparison) & (synthetic["setting"] == setting)]
        rows = mine if len(mine) else synthetic[synthetic["setting"] == setting]
        return float(rows["seed sd"].median())

    paid: set[str] = set()
    rows = []
    for question in study_questions(profile):
        arm, reference = by_base.get(question.arm, []), by_base.get(question.reference, [])
        new = [run for run in (*reference, *arm) if run not in paid]
        paid.update(new)
        pairs = min(len(arm), len(reference))
        row = {"question": question.text, "arm seeds": len(arm), "vs seeds": len(reference), "new runs": len(new),
               "new epochs": sum(jobs[run].epochs for run in new), "new GPU-h": round(hours(new), 1)}
        for s in SETTINGS:
            row[f"{s}: WIDER FACE spread"] = round(smallest_difference(widerface[s], pairs), 1)
            row[f"{s}: synthetic spread"] = round(smallest_difference(synthetic_sd(question, s), pairs), 1)
        rows.append(row)
    rest = [run for run in jobs if run not in paid]
    rows.append({"question": "(runs no question compares: pruned variants, budget curve, controls)", "arm seeds": 0,
                 "vs seeds": 0, "new runs": len(rest), "new epochs": sum(jobs[r].epochs for r in rest),
                 "new GPU-h": round(hours(rest), 1)})
    rows.append({"question": "total", "arm seeds": 0, "vs seeds": 0, "new runs": len(jobs),
                 "new epochs": sum(job.epochs for job in jobs.values()), "new GPU-h": round(hours(jobs), 1)})
    return pd.DataFrame(rows)


def describe_budget(profile: RunProfile, images_per_second: float, train_images: int, rate_source: str) -> str:
    """The question budget as printed by `ffcore study plan`: a heading that says where every figure comes from,
    then the table."""
    table = question_budget(profile, images_per_second, train_images)
    total = table.iloc[-1]
    spread = widerface_seed_spread()
    heading = (f"questions of profile {profile.name}: {total['new runs']} runs, {total['new epochs']} epochs, "
               f"{total['new GPU-h']:.0f} GPU-hours ({total['new GPU-h'] / 24:.1f} GPU-days) at {images_per_second:g} "
               f"images/s ({rate_source}) on {train_images} training images per epoch.\n"
               "smallest difference each can establish = half-width of its 95 % interval from the seed spread alone "
               f"(AP points): 'WIDER FACE spread' from the released V1's two trainings ({', '.join(f'{s} {spread[s]:g}' for s in SETTINGS)} "
               f"points apart; {MEASUREMENTS.name}), 'synthetic spread' from {SYNTHETIC_SPREADS.relative_to(REPO_ROOT)}; "
               "'-': one seed on a side, nothing can be established")
    shown = table[["question", "arm seeds", "vs seeds", "new runs", "new epochs", "new GPU-h"]].copy()
    for source in ("WIDER FACE spread", "synthetic spread"):
        columns = [f"{s}: {source}" for s in SETTINGS]
        shown[f"smallest e / m / h, {source}"] = [
            " / ".join("-" if not np.isfinite(row[c]) else f"{row[c]:.1f}" for c in columns)
            if row["arm seeds"] else "" for _, row in table.iterrows()]
    with pd.option_context("display.max_colwidth", 80, "display.width", 250, "display.max_columns", 20):
        return heading + "\n" + shown.to_string(index=False, na_rep="")
