"""Ablations: FeatherFace V1 with one V2 part swapped in at a time, V2's variants, pruned variants.

The one-part swaps are the variants `ffcore.models.zoo.ONE_PART_SWAPS` declares (variant ->
base, part); each trains with V1's recipe and length and is compared with V1 on the same
validation images (paired bootstrap interval of the AP difference). V2's variants train
with V2's recipe and are compared with V2. Pruned variants are not one-part swaps: they
are cut from their trained parent and fine-tuned, and get their own table with the AP
before and after fine-tuning.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ffcore.data.ground_truth import SETTINGS
from ffcore.eval.bootstrap import POOLED_METHOD
from ffcore.runs.context import Study
from ffcore.runs.plan import BASELINE, one_part_swaps, study_swaps, study_v2_variants, v2_variants  # noqa: F401
from ffcore.runs.datasets import evaluation_split


def _left_out(declared: list[str], trained: list[str]) -> str:
    missing = [name for name in declared if name not in trained]
    return f"; not trained in this profile: {', '.join(missing)}" if missing else ""


def ablation_models() -> list[str]:
    """V1, its one-part swaps, then V2 and V2's registered variants."""
    return [BASELINE, *one_part_swaps(), "featherface_v2", *v2_variants()]


def _description(name: str) -> str:
    from ffcore.models import model_entry

    return model_entry(name).description


def _part(name: str) -> str:
    from ffcore.models.zoo import ONE_PART_SWAPS

    return ONE_PART_SWAPS[name][1] if name in ONE_PART_SWAPS else ""


PLACEBO = "placebo (noise floor)"


def _role(model: str, reference: str) -> str:
    """"reference", PLACEBO for a swap that computes what its base computes, else "swap" / "variant"."""
    from ffcore.models.zoo import ONE_PART_SWAPS, PLACEBO_SWAPS

    if model == reference:
        return "reference"
    if model in PLACEBO_SWAPS:
        return PLACEBO
    return "swap" if model in ONE_PART_SWAPS else "variant"


def ablation_variants(study: Study) -> pd.DataFrame:
    """The variants with what each changes, parameters (true, thop) and FLOPs; no training (deterministic)."""
    from ffcore.study.architecture import model_summary

    size = study.profile.flops_size
    base = model_summary(BASELINE, size)
    rows = []
    for name in ablation_models():
        summary = model_summary(name, size)
        rows.append({"model": name, "part swapped": _part(name), "change": _description(name),
                     "parameters": summary["parameters"],
                     "params vs V1 %": round(100 * (summary["parameters"] - base["parameters"]) / base["parameters"], 1),
                     "thop_parameters": summary["thop_parameters"], f"GFLOPs_{size}": round(summary["gflops"], 3)})
    table = pd.DataFrame(rows)
    others = table.iloc[1:]
    smallest = others.loc[others["parameters"].idxmin()] if len(others) else table.iloc[0]
    study.save_table(table, "ablation_variants", data_free=True,
                     caption=f"Ablation variants: parameters and FLOPs at {size}x{size}",
                     headline=f"{len(table)} variants; largest saving {smallest['model']} "
                              f"({smallest['params vs V1 %']:+.1f}% parameters)")
    return table


def _arm(study: Study, run: str) -> dict[int, str]:
    """seed -> run of every seed the study trains for `run`'s model (just `run` when the plan has no other)."""
    from ffcore.study.comparisons import arm_runs
    from ffcore.runs.plan import split_seed

    base, seed = split_seed(run)
    try:
        return arm_runs(study, base)
    except KeyError:   # a run outside the plan (called directly): that run alone
        return {seed: run}


def _comparison_rows(study: Study, runs: list[str], reference: str) -> pd.DataFrame:
    """One row per model: AP with its interval and the difference with `reference` (by column name).

    A model the study trains over several seeds is pooled over them (mean AP, two-stage t interval
    over seeds and images: `ffcore.eval.bootstrap.pooled_difference`); a model with one training run has an image-level interval and, against
    the reference, the verdict "one seed: not established" (`ffcore.eval.bootstrap.verdict`)."""
    from ffcore.eval.bootstrap import pooled_ap, pooled_difference
    from ffcore.study.architecture import model_summary
    from ffcore.study.comparisons import difference_columns, seeds_text
    from ffcore.study.evaluation import evaluate_run
    from ffcore.runs.plan import model_of_run

    p = study.profile
    size = p.flops_size
    arms = {run: _arm(study, run) for run in [reference, *runs]}
    results = {r: evaluate_run(study, r) for arm in arms.values() for r in arm.values()}

    def arm_results(run):
        return {seed: results[r] for seed, r in arms[run].items()}

    rows = []
    for run in [reference, *runs]:
        summary = model_summary(model_of_run(run), size)
        row = {"model": run, "vs": "" if run == reference else reference, "part swapped": _part(model_of_run(run)),
               "role": _role(model_of_run(run), model_of_run(reference)),
               "seeds": seeds_text(arms[run], arms[reference]) if run != reference else str(len(arms[run])),
               "parameters": summary["parameters"], f"GFLOPs_{size}": round(summary["gflops"], 3)}
        aps = pooled_ap(arm_results(run), resamples=p.bootstrap_resamples, seed=p.seed)
        for s in SETTINGS:
            interval = aps[s].scaled(100)
            row.update({f"AP {s} %": round(interval.estimate, 2), f"{s} CI low": round(interval.low, 2),
                        f"{s} CI high": round(interval.high, 2)})
        if run == reference:
            row.update({key: value for s in SETTINGS for key, value in
                        ((f"d{s} AP pts", 0.0), (f"d{s} CI low", float("nan")), (f"d{s} CI high", float("nan")),
                         (f"{s} verdict", "reference"))})
        else:
            row.update(difference_columns(pooled_difference(arm_results(run), arm_results(reference),
                                                             resamples=p.bootstrap_resamples, seed=p.seed)))
        row["checkpoint"] = ", ".join(study.used_checkpoints[r] for r in arms[run].values())
        rows.append(row)
    return pd.DataFrame(rows)


def _train_all(study: Study, runs: list[str], owned_here: list[str]) -> None:
    """Train or load every seed the study trains of each run's model (`_arm`)."""
    from ffcore.study.training_tables import train_or_load

    owned = {run for name in owned_here for run in _arm(study, name).values()}
    for name in runs:
        for run in _arm(study, name).values():
            # runs of earlier notebooks are reused; force retrains only what this notebook owns
            train_or_load(study, run, force=study.force and run in owned)


def _comparison_headline(table: pd.DataFrame, reference: str) -> str:
    others = table[(table["model"] != reference) & (table["hard verdict"] != "reference")]   # controls left out
    outside = int(((others["dhard CI low"] > 0) | (others["dhard CI high"] < 0)).sum())
    best = table.loc[table["AP hard %"].idxmax()]
    from ffcore.eval.bootstrap import ONE_SEED

    single = int((others["hard verdict"] == ONE_SEED).sum())
    established = others[others["hard verdict"] != ONE_SEED]
    return (f"{reference} hard AP {table.loc[table['model'] == reference, 'AP hard %'].iloc[0]:.1f}%; best "
            f"{best['model']} {best['AP hard %']:.1f}%; {single} of {len(others)} rows one training run per side "
            f"({ONE_SEED}; {outside} of {len(others)} hard-AP intervals exclude 0)"
            + "".join(f"; {row['model']} pooled over seeds: hard {row['dhard AP pts']:+.1f} [{row['dhard CI low']:+.1f}, "
                      f"{row['dhard CI high']:+.1f}], {row['hard verdict']}" for _, row in established.iterrows()))


def ablation_table(study: Study) -> pd.DataFrame:
    """V1 and each one-part swap (declared in the zoo), trained with V1's recipe, evaluated on the same
    images: AP with intervals and the paired difference with V1 and its verdict."""
    from ffcore.runs.training import study_run
    from ffcore.study.comparisons import per_seed_aps

    swaps = [study_run(study, model) for model in study_swaps(study.profile)]
    baseline = study_run(study, BASELINE)
    _train_all(study, [baseline, *swaps], owned_here=swaps)
    table = _comparison_rows(study, swaps, baseline)
    per_seed_aps(study, {run: _arm(study, run) for run in [baseline, *swaps]}, "ablations_per_seed",
                 "V1 and its one-part swaps, seed by seed")
    study.save_table(table, "ablations", checkpoints=[baseline, *swaps], test_scale=str(study.profile.eval_scale),
                     resamples=study.profile.bootstrap_resamples,
                     caption=f"One-part swaps of FeatherFace V1 on the {evaluation_split(study).note} (AP at test "
                             f"scale {study.profile.eval_scale}, 95% bootstrap intervals over the images; differences "
                             "vs V1 paired on the same images; "
                             f"a model trained over several seeds is pooled over them (mean AP; {POOLED_METHOD}), "
                             "a comparison with one training run on either side is 'one seed: not established'"
                             f"{_left_out(one_part_swaps(), study_swaps(study.profile))})",
                     headline=_comparison_headline(table, baseline))
    placebo_check(study)       # printed under the table, and written beside it
    return table


def placebo_rows(table: pd.DataFrame) -> pd.DataFrame:
    """One row per placebo of a comparison table and setting: its difference, interval and whether the
    interval contains 0 (`passes`). A placebo computes what its base computes, so an interval without 0 is
    a sign that the intervals are too narrow, or that the two trainings differ in more than the swap."""
    placebos = table[table["role"] == PLACEBO] if "role" in table else table.iloc[0:0]
    rows = [{"model": row["model"], "vs": row["vs"], "seeds": row["seeds"], "setting": s,
             "difference AP pts": row[f"d{s} AP pts"], "CI low": row[f"d{s} CI low"], "CI high": row[f"d{s} CI high"],
             "passes": bool(row[f"d{s} CI low"] <= 0 <= row[f"d{s} CI high"])}
            for _, row in placebos.iterrows() for s in SETTINGS]
    return pd.DataFrame(rows, columns=["model", "vs", "seeds", "setting", "difference AP pts", "CI low", "CI high",
                                       "passes"])


def placebo_check(study: Study, name: str = "ablations") -> pd.DataFrame:
    """The placebo's intervals from the written comparison table, each checked to contain 0; written as
    `placebo_check` and printed, so every run says whether its noise floor held."""
    from ffcore.report.tables import read_table

    rows = placebo_rows(read_table(study, name))
    if rows.empty:
        print(f"placebo check: this profile trains no placebo swap ({study.profile.name}'s ablation_swaps)")
        return rows
    failed = rows[~rows["passes"]]
    verdict = ("every placebo interval contains 0" if failed.empty else
               "placebo interval without 0: " + ", ".join(f"{r['model']} {r['setting']}" for _, r in failed.iterrows()))
    print(f"placebo check: {verdict}")
    study.save_table(rows, "placebo_check", checkpoints=sorted(set(rows["model"]) | set(rows["vs"])),
                     caption=f"The placebo swap (computes what V1 computes) against V1 on the "
                             f"{evaluation_split(study).note}: its difference should be noise, so each 95 % "
                             "interval should contain 0 ('passes')",
                     headline=f"placebo check: {verdict}")
    return rows


def v2_variants_table(study: Study) -> pd.DataFrame:
    """V2's registered variants, trained with V2's recipe, against V2 (paired differences)."""
    from ffcore.runs.training import study_run
    from ffcore.study.comparisons import per_seed_aps

    variants = [study_run(study, model) for model in study_v2_variants(study.profile)]
    v2 = study_run(study, "featherface_v2")
    _train_all(study, [v2, *variants], owned_here=variants)
    table = _comparison_rows(study, variants, v2)
    controls = _random_start_rows(study, variants)
    table = pd.concat([table, controls], ignore_index=True) if len(controls) else table
    compared = [v2, *variants, *controls.get("model", [])[:1]]
    per_seed_aps(study, {run: _arm(study, run) for run in dict.fromkeys(compared)}, "v2_variants_per_seed",
                 "V2 and its variants, seed by seed")
    study.save_table(table, "v2_variants", checkpoints=list(dict.fromkeys(compared)),
                     resamples=study.profile.bootstrap_resamples,
                     caption=f"V2 and its variants (same recipe as V2) on the {evaluation_split(study).note}, "
                             "differences vs V2 paired on the same images"
                             + ("; a variant that starts from random weights (V2-ViT) also against V2 trained from "
                                "random weights (the control rows), which separates its parts from its start"
                                if len(controls) else "") + " ("
                             f"a model trained over several seeds is pooled over them (mean AP; {POOLED_METHOD}), "
                             "a comparison with one training run on either side is 'one seed: not established'"
                             ")"
                             f"{_left_out(v2_variants(), study_v2_variants(study.profile))}",
                     headline=_comparison_headline(table, v2))
    return table


def _random_start_rows(study: Study, variants: list[str]) -> pd.DataFrame:
    """V2 from random weights (the control row) and each variant that starts from random weights against
    it, where the profile trains the control (`ffcore.runs.plan.random_start_runs`): V2-ViT has no
    ImageNet start, so against V2 it differs in two things, against this control in its parts only."""
    from ffcore.models import create_model
    from ffcore.models.loading import has_imagenet_backbone
    from ffcore.runs.plan import RANDOM_START_SUFFIX, random_start_runs
    from ffcore.runs.training import model_of_run, study_run

    if not random_start_runs(study.profile):
        return pd.DataFrame()
    control = study_run(study, study.profile.student + RANDOM_START_SUFFIX)
    random = [run for run in variants if not has_imagenet_backbone(create_model(model_of_run(run)))]
    _train_all(study, [control, *random], owned_here=[control])
    rows = _comparison_rows(study, random, control)
    rows.loc[rows["model"] == control, "role"] = "control: V2 from random weights"
    return rows


def pruned_table(study: Study) -> pd.DataFrame:
    """Each pruned variant whose parent the study trains: the parent's AP, the AP right after pruning
    and after fine-tuning (intervals), and the paired differences with the parent. Where the profile
    trains the pruning control (`pruning_control`), also the unpruned parent fine-tuned the same way,
    and the pruned model's difference with it: what pruning costs at equal training."""
    from ffcore.study.architecture import model_summary
    from ffcore.study.evaluation import ap_frame, paired_comparison
    from ffcore.runs.plan import UNPRUNED_FINETUNE_SUFFIX, pruning_control_runs
    from ffcore.runs.plan import NOT_FINETUNED_SUFFIX, pruned_parent, study_pruned_variants
    from ffcore.runs.training import study_run
    from ffcore.study.comparisons import per_seed_aps
    from ffcore.study.training_tables import finetune_pruned_or_load, train_or_load

    p = study.profile
    rows = []
    variants = study_pruned_variants(p)
    controls = set(pruning_control_runs(p))
    for variant in variants:
        finetune_pruned_or_load(study, variant)
        parent_model = pruned_parent(variant)
        parent, before, after = (study_run(study, name) for name in (parent_model, variant + NOT_FINETUNED_SUFFIX,
                                                                      variant))
        control = study_run(study, parent_model + UNPRUNED_FINETUNE_SUFFIX)
        stages = [(parent, "trained parent"), (before, "pruned, not fine-tuned"),
                  (after, f"pruned + {p.finetune_epochs} fine-tuning epochs")]
        if control in controls:
            train_or_load(study, control)
            stages.append((control, f"control: unpruned + {p.finetune_epochs} fine-tuning epochs"))
        runs = [run for run, _ in stages]
        aps = ap_frame(study, runs).set_index("run")
        differences = paired_comparison(study, [(run, parent) for run in runs[1:]]).set_index("run")
        against_control = (paired_comparison(study, [(after, control)]).set_index("run")
                           if control in controls else None)
        for run, stage in stages:
            row = {"variant": variant, "stage": stage, "run": run,
                   "parameters": model_summary(variant if run in (before, after) else parent_model,
                                               p.flops_size)["parameters"]}
            for s in SETTINGS:
                row.update({f"AP {s} %": aps.loc[run, f"AP {s} %"], f"{s} CI low": aps.loc[run, f"{s} CI low"],
                            f"{s} CI high": aps.loc[run, f"{s} CI high"]})
            row["dhard AP pts vs parent"] = differences.loc[run, "dhard AP pts"] if run != parent else 0.0
            row["hard verdict"] = differences.loc[run, "hard verdict"] if run != parent else "reference"
            if against_control is not None:
                mine = run == after
                row.update({"dhard AP pts vs control": against_control.loc[after, "dhard AP pts"] if mine else None,
                            "dhard vs control CI low": against_control.loc[after, "dhard CI low"] if mine else None,
                            "dhard vs control CI high": against_control.loc[after, "dhard CI high"] if mine else None,
                            "hard verdict vs control": against_control.loc[after, "hard verdict"] if mine else ""})
            rows.append(row)
    table = pd.DataFrame(rows)
    runs = sorted(set(table["run"])) if len(table) else []
    control_note = (f"; the control is the trained parent fine-tuned, unpruned, for the same {p.finetune_epochs} "
                    "epochs, and 'vs control' the fine-tuned pruned model minus it: pruning's cost at equal training"
                    if controls else "; no pruning control in this profile (its pruning_control is off)")
    study.save_table(table, "pruned", checkpoints=runs, resamples=p.bootstrap_resamples,
                     caption="Pruned variants (20% of the SSH internal channels, L1): AP of the trained parent, "
                             f"after pruning and after fine-tuning from it, on the {evaluation_split(study).note} "
                             f"(one training run each: 'one seed: not established'){control_note}",
                     headline="; ".join(f"{row['run']} ({row['stage']}): hard {row['AP hard %']:.1f}%"
                                        for _, row in table.iterrows()))
    return table


def describe_comparison(study: Study, name: str):
    """"What this shows" for `ablations` or `v2_variants`, from the written table."""
    from ffcore.report.tables import read_table, markdown

    table = read_table(study, name)
    table["part swapped"] = table["part swapped"].astype(object).fillna("")   # an empty cell reads back as NaN
    reference = table[table["hard verdict"] == "reference"].iloc[0]
    others = table[table["hard verdict"] != "reference"]
    split = evaluation_split(study).name
    placebo = others["role"] == PLACEBO if "role" in others else pd.Series(False, index=others.index)
    lines = [f"{row['model']} ({'placebo, the noise floor' if is_placebo else row['part swapped'] or 'variant'}; "
             f"seeds {row['seeds']}{'' if row['vs'] == reference['model'] else ', against ' + row['vs']}): "
             f"hard AP {row['AP hard %']:.1f} %, {row['dhard AP pts']:+.1f} points "
             f"[{row['dhard CI low']:+.1f}, {row['dhard CI high']:+.1f}], {row['hard verdict']}"
             for (_, row), is_placebo in zip(others.iterrows(), placebo)]
    if others.empty:
        return markdown(f"**What this shows.** Only {reference['model']} (hard AP {reference['AP hard %']:.1f} % "
                        f"[{reference['hard CI low']:.1f}, {reference['hard CI high']:.1f}]): this profile trains "
                        "none of the variants this table compares (see the table's caption).")
    from ffcore.eval.bootstrap import ONE_SEED

    single = others[others["hard verdict"] == ONE_SEED]
    outside = int(((single["dhard CI low"] > 0) | (single["dhard CI high"] < 0)).sum())
    if len(single) == len(others):
        reading = (f"Each comparison here has one training run on a side, so no row states a higher or lower: the "
                   f"intervals resample the {split} images only, not the training seed. ")
    else:
        reading = (f"Rows pooled over seeds ({len(others) - len(single)} of {len(others)}) take their verdict from "
                   f"the pooled interval written beside it (seeds, then {split} images); {len(single)} rows have one "
                   "training run on a side and state no higher or lower. ")
    return markdown(f"**What this shows.** Against {reference['model']} (hard AP {reference['AP hard %']:.1f} % "
            f"[{reference['hard CI low']:.1f}, {reference['hard CI high']:.1f}]):\n\n- " + "\n- ".join(lines)
            + "\n\n" + reading
            + (f"{outside} of {len(single)} single-run hard-AP intervals exclude 0; those are the rows to repeat "
               "over seeds before reading them as effects of the part swapped." if len(single) else "")
            + _seed_noise_note(study, single) + _placebo_note(table, reference["model"]))


def _placebo_note(table: pd.DataFrame, reference: str) -> str:
    """The placebo's difference as the noise floor the swaps are read against, and its check."""
    rows = placebo_rows(table)
    if rows.empty:
        return ""
    notes = []
    for model, checks in rows.groupby("model", sort=False):
        hard = checks[checks["setting"] == "hard"].iloc[0]
        held = "contains 0 on every setting" if checks["passes"].all() else (
            "does NOT contain 0 on " + ", ".join(checks.loc[~checks["passes"], "setting"]))
        notes.append(f"{model} computes what {reference} computes, so its difference, hard "
                     f"{hard['difference AP pts']:+.1f} points [{hard['CI low']:+.1f}, {hard['CI high']:+.1f}], is what "
                     f"a retraining alone moves: the noise floor the swaps are read against; its interval {held}")
    return "\n\nThe placebo: " + "; ".join(notes) + "."


def _seed_noise_note(study: Study, others: pd.DataFrame) -> str:
    """The training-seed noise the image-level intervals leave out, from notebook 03's pooled row."""
    from ffcore.study.comparisons import POOLED

    path = study.tables_dir / "distillation_comparison.csv"
    if not path.is_file() or others.empty:
        return ""
    seeds = pd.read_csv(path, comment="#")
    pooled = seeds[seeds["run"] == POOLED] if "run" in seeds else seeds.iloc[0:0]
    if pooled.empty or "vs AP hard sd" not in pooled:
        return ""
    row = pooled.iloc[0]
    spreads = [float(v) for v in (row["vs AP hard sd"], row["AP hard sd"]) if np.isfinite(float(v))]
    if not spreads:
        return ""
    largest = max(abs(float(v)) for v in others["dhard AP pts"])
    # two independent runs differ by sqrt(2) x the per-run standard deviation
    spread = 2 ** 0.5 * max(spreads)
    return (f"\n\nOver the training seeds of notebook 03 ({row['seeds']}), V2's hard AP had a standard deviation "
            f"of {min(spreads):.1f}-{max(spreads):.1f} points, so two single runs differ by about {spread:.1f} "
            f"points from the seed alone; the largest difference here is {largest:.1f} points.")


def describe_pruned(study: Study, name: str = "pruned"):
    from ffcore.report.tables import read_table, markdown

    table = read_table(study, name)
    lines = []
    for variant, part in table.groupby("variant", sort=False):
        parent, before, after = (part.iloc[i] for i in range(3))
        line = (f"{variant}: parent hard AP {parent['AP hard %']:.1f} %, right after pruning "
                f"{before['AP hard %']:.1f} % ({before['dhard AP pts vs parent']:+.1f} points, "
                f"{before['hard verdict']}), after fine-tuning {after['AP hard %']:.1f} % "
                f"({after['dhard AP pts vs parent']:+.1f} points, {after['hard verdict']})")
        if len(part) > 3:
            control = part.iloc[3]
            line += (f"; the unpruned parent fine-tuned the same way reaches {control['AP hard %']:.1f} %, so at equal "
                     f"training pruning costs {after['dhard AP pts vs control']:+.1f} points "
                     f"[{after['dhard vs control CI low']:+.1f}, {after['dhard vs control CI high']:+.1f}], "
                     f"{after['hard verdict vs control']}")
        lines.append(line)
    return markdown("**What this shows.**\n\n- " + "\n- ".join(lines)
                    + ("" if "dhard AP pts vs control" in table else
                       "\n\nThis profile has no pruning control (the parent fine-tuned unpruned for as long), so a "
                       "gain after fine-tuning may be the extra training rather than the pruning."))


def ablation_figure(study: Study, name: str = "ablations"):
    """Parameters and hard AP (with its 95 % interval) of V1 and every one-part swap."""
    from ffcore.report.plotting import PALETTE, model_style, new_figure, pretty_name

    table = pd.read_csv(study.tables_dir / "ablations.csv", comment="#")
    models = list(table["model"])
    fig, axes = new_figure(ncols=2, aspect=0.16 + 0.07 * len(models), sharey=True)
    labels = [pretty_name(m) for m in models]
    # the baseline in V1's colour (as in every figure), each swap in one neutral colour
    colours = [model_style(BASELINE)["color"] if m == BASELINE else PALETTE[5] for m in models]
    rows = range(len(models))
    axes[0, 0].barh(rows, table["parameters"] / 1e3, color=colours)
    axes[0, 0].set_xlabel("parameters (thousands)")
    axes[0, 0].set_yticks(rows, labels)
    axes[0, 0].invert_yaxis()
    errors = [table["AP hard %"] - table["hard CI low"], table["hard CI high"] - table["AP hard %"]]
    axes[0, 1].barh(rows, table["AP hard %"], xerr=errors, capsize=2, color=colours, error_kw={"elinewidth": 1})
    for row, (value, high) in enumerate(zip(table["AP hard %"], table["hard CI high"])):
        # right of the interval's end: on the bar's end it sat under the whisker
        axes[0, 1].text(high, row, f" {value:.1f}", va="center", fontsize=6)
    axes[0, 1].margins(x=0.12)
    axes[0, 1].set_xlabel("hard AP (%), 95% interval")
    return study.save_figure(fig, name, checkpoints=models,
                             headline=f"{len(models)} models; hard AP range {table['AP hard %'].min():.1f}-"
                                      f"{table['AP hard %'].max():.1f}%")
