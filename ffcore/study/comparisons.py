"""Comparisons of arms trained over several seeds: one row per seed, then the `pooled` row.

An *arm* is one recipe trained with several training seeds (V2 alone, V2 distilled from V1,
V1): `arm_runs` reads its runs from the study's plan. A comparison of two arms gets a row per
seed both arms share (the paired image-level interval of that seed's two runs; a single pair
is "one seed: not established"), then a row labelled `pooled`: the difference of the arms'
mean AP over their seeds with its two-stage t interval (`ffcore.eval.bootstrap.
pooled_difference`: t over the seeds, widened by the images' shared variance). Verdicts come only from that
row; an arm with one seed makes it "one seed: not established" as well.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ffcore.eval.bootstrap import POOLED_METHOD
from ffcore.runs.context import Study
from ffcore.runs.datasets import evaluation_split
from ffcore.data.ground_truth import SETTINGS
from ffcore.report.tables import read_table, markdown
from ffcore.study.evaluation import evaluate_run, paired_comparison

POOLED = "pooled"


def arm_runs(study: Study, base: str) -> dict[int, str]:
    """training seed -> run, for every run of the study's plan whose name without its seed is `base`
    (`featherface_v2` -> {0: "featherface_v2", 1: "featherface_v2_seed1", ...})."""
    from ffcore.runs.plan import planned_runs, split_seed

    runs = {split_seed(run)[1]: run for run in planned_runs(study.profile) if split_seed(run)[0] == base}
    if not runs:
        raise KeyError(f"the study's plan (profile {study.profile.name!r}) trains no run of {base!r}")
    return dict(sorted(runs.items()))


def per_seed_aps(study: Study, arms: dict[str, dict[int, str]], name: str, what: str) -> pd.DataFrame:
    """Every run behind pooled rows, one row per training seed: arm, seed, run, AP per setting (%) and
    checkpoint, written as table `name`, so a pooled row can be recomputed from committed numbers."""
    rows = []
    for arm, runs in arms.items():
        for seed, run in runs.items():
            result = evaluate_run(study, run)
            rows.append({"arm": arm, "seed": seed, "run": run,
                         **{f"AP {s} %": round(100 * float(result.ap[s]), 2) for s in SETTINGS},
                         "checkpoint": study.used_checkpoints[run]})
    table = pd.DataFrame(rows, columns=["arm", "seed", "run", *(f"AP {s} %" for s in SETTINGS), "checkpoint"])
    study.save_table(table, name, checkpoints=list(table["run"]), split=evaluation_split(study).name,
                     caption=f"{what}: the AP of every training seed's run on the {evaluation_split(study).note}",
                     headline=f"{len(table)} runs of {len(arms)} arms")
    return table


def difference_columns(differences: dict) -> dict:
    """Table columns of setting -> difference (AP fraction): points, interval and verdict per setting."""
    from ffcore.eval.bootstrap import verdict

    row = {}
    for s in SETTINGS:
        d = differences[s].scaled(100)
        row.update({f"d{s} AP pts": round(d.estimate, 2), f"d{s} CI low": round(d.low, 2),
                    f"d{s} CI high": round(d.high, 2), f"{s} verdict": verdict(d)})
    return row


def seeds_text(arm: dict, reference: dict) -> str:
    """"5 vs 5, paired by seed" / "1 vs 5": the seeds behind a comparison, for its `seeds` column."""
    paired = sorted(arm) == sorted(reference) and len(arm) > 1
    return f"{len(arm)} vs {len(reference)}" + (", paired by seed" if paired else "")


def seed_comparison(study: Study, arm: dict[int, str], reference: dict[int, str], comparison: str) -> pd.DataFrame:
    """Rows of one arm against another: each shared seed's pair, then the `pooled` row (mean AP of
    each arm over its seeds, the pooled difference, its two-stage interval and verdict, and the
    standard deviation over seeds of each arm's AP and of the per-seed difference)."""
    from ffcore.eval.bootstrap import pooled_difference

    p = study.profile
    shared = [seed for seed in arm if seed in reference]
    table = paired_comparison(study, [(arm[seed], reference[seed]) for seed in shared])
    rows = table.to_dict("records")
    results = {run: evaluate_run(study, run) for run in [*arm.values(), *reference.values()]}
    for row, seed in zip(rows, shared):
        row.update({"comparison": comparison, "seed": seed, "seeds": "1 vs 1"})
        for s in SETTINGS:
            row[f"AP {s} %"] = round(100 * float(results[row["run"]].ap[s]), 2)
            row[f"vs AP {s} %"] = round(100 * float(results[row["vs"]].ap[s]), 2)
    pooled = pooled_difference({seed: results[run] for seed, run in arm.items()},
                               {seed: results[run] for seed, run in reference.items()},
                               resamples=p.bootstrap_resamples, seed=p.seed)
    summary = {"run": POOLED, "vs": "", "comparison": comparison, "seed": -1, "seeds": seeds_text(arm, reference),
               "arm seeds": len(arm), "vs seeds": len(reference), **difference_columns(pooled)}
    for s in SETTINGS:
        ours = np.array([100 * float(results[run].ap[s]) for run in arm.values()])
        theirs = np.array([100 * float(results[run].ap[s]) for run in reference.values()])
        per_seed = [r[f"d{s} AP pts"] for r in rows]
        summary.update({f"AP {s} %": round(float(ours.mean()), 2), f"vs AP {s} %": round(float(theirs.mean()), 2),
                        f"AP {s} sd": _sd(ours), f"vs AP {s} sd": _sd(theirs), f"d{s} sd over seeds": _sd(per_seed)})
    columns = ["comparison", "run", "vs", "seed", "seeds"]
    frame = pd.DataFrame([*rows, summary])
    return frame[columns + [c for c in frame.columns if c not in columns]]


def _sd(values) -> float:
    values = np.asarray(values, dtype=float)
    return round(float(values.std(ddof=1)), 2) if values.size > 1 else float("nan")


def pooled_caption(study: Study, what: str) -> str:
    split = evaluation_split(study)
    return (f"{what} (AP points) on the {split.note}: one row per training seed both arms share (paired 95% "
            f"bootstrap interval over the images; a single pair of runs is 'one seed: not established'), then the "
            f"row 'pooled': mean over each arm's seeds, its 95% interval ({POOLED_METHOD}; "
            f"{study.profile.bootstrap_resamples} image resamples) and the only verdict")


def pooled_headline(table: pd.DataFrame) -> str:
    return "; ".join(f"{row['comparison']}, pooled over {row['seeds']} seeds: " + ", ".join(
        f"{s} {row[f'd{s} AP pts']:+.1f} [{row[f'd{s} CI low']:+.1f}, {row[f'd{s} CI high']:+.1f}] "
        f"({row[f'{s} verdict']})" for s in SETTINGS) for _, row in table[table["run"] == POOLED].iterrows())


def pooled_sentence(row: pd.Series) -> str:
    """The pooled row in words: every higher / lower with its pooled interval."""
    parts = [f"{s} {row[f'd{s} AP pts']:+.1f} points [{row[f'd{s} CI low']:+.1f}, {row[f'd{s} CI high']:+.1f}], "
             f"{row[f'{s} verdict']}" for s in SETTINGS]
    return "; ".join(parts)


def _per_seed_sentence(rows: pd.DataFrame) -> str:
    if rows.empty:
        return ""
    low, high = rows["dhard AP pts"].min(), rows["dhard AP pts"].max()
    outside = int(((rows["dhard CI low"] > 0) | (rows["dhard CI high"] < 0)).sum())
    return (f" Seed by seed, the hard-AP difference ranges from {low:+.1f} to {high:+.1f} points; {outside} of "
            f"{len(rows)} single-seed image intervals exclude 0, but one pair of runs is not a verdict: "
            "a retraining can move it by more than its image interval is wide.")


# ----------------------------------------------------------------------------- distillation

def distillation_comparison(study: Study, name: str = "distillation_comparison") -> pd.DataFrame:
    """V2 distilled from the profile's teacher vs V2 alone over the profile's seeds (rows per seed, then
    `pooled`), then each WIDER FACE-trained teacher's distillation (one run) vs V2 alone of the same seed."""
    from ffcore.runs.plan import DISTILLED_SUFFIX, seeded_run, split_seed, widerface_teacher_runs

    student = study.profile.student
    table = seed_comparison(study, arm_runs(study, student + DISTILLED_SUFFIX), arm_runs(study, student),
                            f"{student}{DISTILLED_SUFFIX} vs {student}")
    for run in widerface_teacher_runs(study.profile):
        reference = {0: seeded_run(student, split_seed(run)[1])}
        extra = seed_comparison(study, {0: run}, reference, f"{run} vs {student}")
        table = pd.concat([table, extra[extra["run"] != POOLED]], ignore_index=True)
    runs = sorted((set(table["run"]) | set(table["vs"])) - {POOLED, ""})
    study.save_table(table, name, checkpoints=runs, resamples=study.profile.bootstrap_resamples,
                     split=evaluation_split(study).name,
                     caption=pooled_caption(study, "V2 distilled minus V2 alone")
                     + "; the distillations from WIDER FACE-trained teachers are one run each",
                     headline=pooled_headline(table))
    return table


def describe_distillation(study: Study, name: str = "distillation_comparison"):
    """"What this shows" for the distillation comparison, from the written table."""
    from ffcore.runs.plan import DISTILLED_SUFFIX

    table = read_table(study, name)
    main = f"{study.profile.student}{DISTILLED_SUFFIX} vs {study.profile.student}"
    ours = table[table["comparison"] == main]
    pooled = ours[ours["run"] == POOLED].iloc[0]
    others = table[table["comparison"] != main]
    real = "; ".join(f"{row['comparison']}: hard {row['dhard AP pts']:+.1f} points [{row['dhard CI low']:+.1f}, "
                     f"{row['dhard CI high']:+.1f}], {row['hard verdict']}" for _, row in others.iterrows())
    return markdown(f"**What this shows.** Pooled over the training seeds ({pooled['seeds']}; V2 distilled from "
                    f"{study.profile.teacher} against V2 alone; 95 % {POOLED_METHOD} on the "
                    f"{evaluation_split(study).name} images), distillation changes V2's AP by: {pooled_sentence(pooled)}. "
                    f"V2 alone averages {pooled['vs AP hard %']:.1f} % hard AP (sd {pooled['vs AP hard sd']:.1f} "
                    f"over seeds), distilled {pooled['AP hard %']:.1f} % (sd {pooled['AP hard sd']:.1f})."
                    + _per_seed_sentence(ours[ours["run"] != POOLED])
                    + (f" From the WIDER FACE-trained teachers (one run each): {real}." if real else ""))


# ----------------------------------------------------------------------------- V2 against V1

def v2_v1_comparison(study: Study, name: str = "v2_vs_v1") -> pd.DataFrame:
    """V2 alone over its seeds against V1 over its seeds (the thesis's central claim): rows per
    shared seed, then `pooled`. With one V1 run the pooled verdict is "one seed: not established"."""
    from ffcore.runs.plan import recipe
    from ffcore.study.training_tables import train_or_load

    p = study.profile
    student, teacher = arm_runs(study, p.student), arm_runs(study, p.teacher)
    for run in (*student.values(), *teacher.values()):
        train_or_load(study, run, force=False)    # trained by notebooks 01 and 03 (or run_all.py): reused
    table = seed_comparison(study, student, teacher, f"{p.student} vs {p.teacher}")
    recipes = {m: recipe(study.profile, m) for m in (p.student, p.teacher)}
    runs = sorted((set(table["run"]) | set(table["vs"])) - {POOLED, ""})
    study.save_table(table, name, checkpoints=runs, resamples=p.bootstrap_resamples, split=evaluation_split(study).name,
                     recipes={m: f"{preset}, {epochs} epochs" for m, (preset, epochs) in recipes.items()},
                     caption=pooled_caption(study, f"{p.student} minus {p.teacher}")
                     + "; " + ", ".join(f"{m} trained with {preset} for {epochs} epochs"
                                        for m, (preset, epochs) in recipes.items()),
                     headline=pooled_headline(table))
    return table


def describe_v2_v1(study: Study, name: str = "v2_vs_v1"):
    """The V2-vs-V1 paragraph, from the written table."""
    table = read_table(study, name)
    pooled = table[table["run"] == POOLED].iloc[0]
    arm, reference = pooled["comparison"].split(" vs ")
    one_seed = str(pooled["hard verdict"]).startswith("one seed")
    arm_count, ref_count = int(pooled["arm seeds"]), int(pooled["vs seeds"])
    reading = (f"{reference if ref_count < 2 else arm} was trained with one seed, so how far a retraining moves it is "
               "unknown and no verdict is stated: the interval covers the other arm's seeds and the images only. "
               "Train it over several seeds to establish the difference." if one_seed else
               "Every higher / lower above is read from that pooled interval.")
    return markdown(f"**What this shows.** {arm} ({arm_count} seed{'s' * (arm_count > 1)}) averages hard AP "
                    f"{pooled['AP hard %']:.1f} %, {reference} ({ref_count} seed{'s' * (ref_count > 1)}) "
                    f"{pooled['vs AP hard %']:.1f} % on the {evaluation_split(study).name} split. Pooled difference "
                    f"{arm} minus {reference} (95 % {POOLED_METHOD}): {pooled_sentence(pooled)}. "
                    + reading)
