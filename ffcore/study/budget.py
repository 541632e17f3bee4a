"""Recipe questions: does the comparison hold at a longer training budget, and with V2's own recipe?

- The training-budget curve (`budget_table`, `budget_figure`): V1, V2 alone and V2 distilled
  (`plan.budget_arms`) trained for the profile's `budget_epochs` beside the length every other
  run has, the recipe otherwise unchanged (the OneCycle schedule stretched over the run; the
  distillation's teacher stays V1's run of the profile's length). At the profile's length an arm
  is pooled over all its seeds; the other lengths have one seed. `budget_differences` states, at
  every length, the distillation gain and V2 against V1 with their pooled intervals, so a
  comparison with one run on a side reads "one seed: not established".
- V2's own recipe (`own_recipe_comparison`): V2 trained with the profile's `student_own_preset`
  (the thesis's recipe, scaled) over `model_seeds`, against V2 with the shared recipe.

A profile that trains none of these gets a one-row table saying so, and no file is written: the
chapter then has no empty table or figure.
"""

from __future__ import annotations

import pandas as pd

from ffcore.data.ground_truth import SETTINGS
from ffcore.eval.bootstrap import POOLED_METHOD
from ffcore.runs.context import Study
from ffcore.runs.datasets import evaluation_split
from ffcore.runs.plan import teacher_display_name


def _profiles_setting(field: str) -> str:
    """The study profiles (not smoke, which only proves the pipeline) that set `field`, e.g. "`synthetic_long`"."""
    from ffcore.runs.profiles import PROFILES

    names = [f"`{name}`" for name, profile in PROFILES.items() if name != "smoke" and getattr(profile, field)]
    return " and ".join(names) or "no study profile"


def _not_trained(what: str, field: str, value) -> pd.DataFrame:
    return pd.DataFrame([{"run": "none", "status": f"not trained: the profile's {field} is {value!r}, so {what} is "
                                                  f"left out (the {_profiles_setting(field)} profile trains it)"}])


def budget_lengths(study: Study) -> dict[str, list[tuple[int, dict[int, str]]]]:
    """arm -> [(epochs, {seed: run}), ...] in increasing length: the profile's own length (every seed
    of the arm) and each of its `budget_epochs` (the budget runs of the plan)."""
    from ffcore.study.comparisons import arm_runs
    from ffcore.runs.plan import budget_arms, budget_run, model_of_run, recipe

    p = study.profile
    lengths = {}
    for arm in budget_arms(p):
        own = recipe(p, model_of_run(arm))[1]
        points = [(own, arm_runs(study, arm))]
        points += [(epochs, arm_runs(study, budget_run(arm, epochs))) for epochs in p.budget_epochs if epochs != own]
        lengths[arm] = sorted(points, key=lambda point: point[0])
    return lengths


def _budget_caption(study: Study, what: str) -> str:
    p = study.profile
    return (f"{what} on the {evaluation_split(study).note}: V1, V2 alone and V2 distilled from V1 trained for "
            f"{', '.join(map(str, sorted({p.epochs, p.student_epochs, *p.budget_epochs})))} epochs with the same recipe "
            f"otherwise ({p.train_preset}; the OneCycle schedule stretched over the run; the distillation's teacher is "
            f"V1's {p.epochs}-epoch run). At {p.student_epochs} epochs each arm is pooled over its training seeds (mean "
            f"AP, {POOLED_METHOD}); every other length is one training run, so its interval "
            "covers the images only and a comparison with it is 'one seed: not established'")


def budget_table(study: Study, name: str = "training_budget") -> pd.DataFrame:
    """AP (95 % interval) of each budget arm at each training length: trains or loads every run first."""
    from ffcore.eval.bootstrap import pooled_ap
    from ffcore.study.comparisons import per_seed_aps
    from ffcore.study.evaluation import evaluate_run
    from ffcore.study.training_tables import train_or_load

    p = study.profile
    if not p.budget_epochs:
        return _not_trained("the training-budget curve", "budget_epochs", p.budget_epochs)
    lengths = budget_lengths(study)
    rows, used = [], []
    for arm, points in lengths.items():
        for epochs, runs in points:
            for run in runs.values():
                # the other lengths are this notebook's runs; the profile's length comes from notebooks 01 and 03
                train_or_load(study, run, force=study.force and epochs in p.budget_epochs)
            results = {seed: evaluate_run(study, run) for seed, run in runs.items()}
            aps = pooled_ap(results, resamples=p.bootstrap_resamples, seed=p.seed)
            row = {"arm": arm, "epochs": epochs, "seeds": len(runs), "runs": ", ".join(runs.values())}
            for s in SETTINGS:
                interval = aps[s].scaled(100)
                row.update({f"AP {s} %": round(interval.estimate, 2), f"{s} CI low": round(interval.low, 2),
                            f"{s} CI high": round(interval.high, 2)})
            rows.append(row)
            used += list(runs.values())
    table = pd.DataFrame(rows)
    per_seed_aps(study, {f"{arm}, {epochs} epochs": runs for arm, points in lengths.items() for epochs, runs in points},
                 f"{name}_per_seed", "The training-budget arms, seed by seed")
    study.save_table(table, name, checkpoints=used, resamples=p.bootstrap_resamples, split=evaluation_split(study).name,
                     columns=["arm", "epochs", "seeds", *(f"AP {s} %" for s in SETTINGS)],
                     caption=_budget_caption(study, "AP against the training budget"),
                     headline="; ".join(f"{row['arm']} {row['epochs']} epochs: hard {row['AP hard %']:.1f}% "
                                        f"[{row['hard CI low']:.1f}, {row['hard CI high']:.1f}]"
                                        for _, row in table.iterrows()))
    return table


def budget_differences(study: Study, name: str = "training_budget_differences") -> pd.DataFrame:
    """At every length: V2 distilled minus V2 alone, and V2 alone minus V1 (the `pooled` rows of
    `comparisons.seed_comparison`, so each verdict comes from its pooled interval)."""
    from ffcore.study.comparisons import POOLED, pooled_headline, seed_comparison
    from ffcore.runs.plan import DISTILLED_SUFFIX

    p = study.profile
    if not p.budget_epochs:
        return _not_trained("the training-budget curve", "budget_epochs", p.budget_epochs)
    lengths = {arm: dict(points) for arm, points in budget_lengths(study).items()}
    student, distilled, teacher = p.student, p.student + DISTILLED_SUFFIX, p.teacher
    frames = []
    for epochs in sorted(lengths[student]):
        for arm, reference in ((distilled, student), (student, teacher)):
            if epochs not in lengths[arm] or epochs not in lengths[reference]:
                continue
            rows = seed_comparison(study, lengths[arm][epochs], lengths[reference][epochs],
                                   f"{arm} vs {reference} at {epochs} epochs")
            pooled = rows[rows["run"] == POOLED].copy()
            pooled.insert(1, "epochs", epochs)
            frames.append(pooled)
    table = pd.concat(frames, ignore_index=True)
    runs = sorted({run for points in lengths.values() for runs in points.values() for run in runs.values()})
    study.save_table(table, name, checkpoints=runs, resamples=p.bootstrap_resamples, split=evaluation_split(study).name,
                     # the verdict printed beside each interval: it is what the table states
                     columns=["comparison", "seeds", *(f"d{s} AP pts" for s in SETTINGS), "hard verdict", "AP hard %",
                              "vs AP hard %"],
                     caption=_budget_caption(study, "The distillation gain and V2 against V1 at each training budget "
                                                    "(AP points; the row's difference of mean APs with its pooled 95% "
                                                    "interval and verdict)"),
                     headline=pooled_headline(table))
    return table


def describe_budget(study: Study, name: str = "training_budget_differences"):
    """"What this shows" for the budget curve, from the written tables."""
    from ffcore.study.comparisons import pooled_sentence
    from ffcore.report.tables import read_table, markdown

    p = study.profile
    if not p.budget_epochs:
        return markdown("**What this shows.** This profile trains every model for one length only (its "
                        "`budget_epochs` is empty), so it says nothing about the training budget; the "
                        f"{_profiles_setting('budget_epochs')} profile adds 20 and 40 epochs.")
    aps = read_table(study, "training_budget")
    table = read_table(study, name)
    curves = "\n".join(f"- {arm}: " + ", ".join(f"{row['epochs']} epochs {row['AP hard %']:.1f} % "
                                               f"[{row['hard CI low']:.1f}, {row['hard CI high']:.1f}]"
                                               f" ({row['seeds']} seed{'s' * (row['seeds'] > 1)})"
                                               for _, row in part.iterrows())
                       for arm, part in aps.groupby("arm", sort=False))
    lines = "\n".join(f"- {row['comparison']} (seeds {row['seeds']}): {pooled_sentence(row)}"
                      for _, row in table.iterrows())
    return markdown(f"**What this shows.** Hard AP against the training length:\n\n{curves}\n\nDifferences at each "
                    f"length (pooled 95 % intervals; a length with one run per arm states no higher or lower):\n\n"
                    f"{lines}\n\nWhether V2's gap to V1 or the distillation gain shrinks with the budget is read from "
                    "these intervals: a change between lengths that stays inside them is not established.")


def budget_figure(study: Study, name: str = "training_budget"):
    """AP (easy, medium, hard panels) against training epochs, one line per arm, with 95 % intervals.
    None (and a line saying why) when the profile trains one length only."""
    from ffcore.report.plotting import model_styles, new_figure, pretty_name
    from ffcore.report.tables import read_table

    if not study.profile.budget_epochs:
        print("no training-budget curve: this profile trains every model for one length (budget_epochs is empty)")
        return None
    table = read_table(study, "training_budget")
    arms = list(dict.fromkeys(table["arm"]))
    styles = model_styles(arms)
    fig, axes = new_figure(ncols=len(SETTINGS), aspect=0.36, sharey=False)
    # arms side by side around each length, so their intervals do not hide one another
    dodge = 0.012 * (table["epochs"].max() - table["epochs"].min() or 1)
    for ax, setting in zip(axes[0], SETTINGS):
        for index, arm in enumerate(arms):
            part = table[table["arm"] == arm].sort_values("epochs")
            errors = [part[f"AP {setting} %"] - part[f"{setting} CI low"],
                      part[f"{setting} CI high"] - part[f"AP {setting} %"]]
            ax.errorbar(part["epochs"] + (index - (len(arms) - 1) / 2) * dodge, part[f"AP {setting} %"],
                        yerr=errors, capsize=3,
                        color=styles[arm]["color"], marker=styles[arm]["marker"],
                        label=pretty_name(arm, teacher=teacher_display_name(study.profile)))
        ax.set_xticks(sorted(set(table["epochs"])))
        ax.set_xlabel("training epochs")
        ax.set_title(setting)
    axes[0][0].set_ylabel("AP (%), 95% interval")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=len(arms), fontsize=7, frameon=False)
    runs = [run for cell in table["runs"] for run in str(cell).split(", ")]
    longest = table[table["epochs"] == table["epochs"].max()]
    return study.save_figure(fig, name, checkpoints=runs,
                             headline="hard AP at the longest budget: " + ", ".join(
                                 f"{row['arm']} {row['AP hard %']:.1f}%" for _, row in longest.iterrows()))


def own_recipe_comparison(study: Study, name: str = "v2_own_recipe") -> pd.DataFrame:
    """V2 with its own recipe minus V2 with the shared recipe: rows per shared seed, then `pooled`."""
    from ffcore.study.comparisons import pooled_caption, pooled_headline, arm_runs, seed_comparison
    from ffcore.runs.plan import OWN_RECIPE_SUFFIX, own_recipe_base, own_recipe_reference, recipe
    from ffcore.study.training_tables import train_or_load

    p = study.profile
    if p.student_own_preset is None:
        return _not_trained("V2's own recipe", "student_own_preset", None)
    own, shared = arm_runs(study, own_recipe_base(p)), arm_runs(study, own_recipe_reference(p))
    for run in own.values():
        train_or_load(study, run)
    for run in shared.values():
        train_or_load(study, run, force=False)   # notebook 03's (or the budget curve's) runs: reused
    epochs = p.own_recipe_epochs or recipe(p, p.student)[1]
    at = "" if p.own_recipe_epochs in (None, p.student_epochs) else f" at {epochs} epochs"
    table = seed_comparison(study, own, shared, f"{p.student}{OWN_RECIPE_SUFFIX} vs {p.student}{at}")
    runs = sorted([*own.values(), *shared.values()])
    study.save_table(table, name, checkpoints=runs, resamples=p.bootstrap_resamples, split=evaluation_split(study).name,
                     recipes={"own": p.student_own_preset, "shared": p.student_preset},
                     caption=pooled_caption(study, f"V2 with its own recipe ({p.student_own_preset}) minus V2 with "
                                                    f"the shared recipe ({p.student_preset}), both {epochs} epochs"),
                     headline=pooled_headline(table))
    return table


def describe_own_recipe(study: Study, name: str = "v2_own_recipe"):
    from ffcore.study.comparisons import POOLED, pooled_sentence
    from ffcore.report.tables import read_table, markdown

    p = study.profile
    if p.student_own_preset is None:
        return markdown("**What this shows.** This profile trains V2 with the shared recipe only "
                        f"(`student_own_preset` is None); the {_profiles_setting('student_own_preset')} profile adds "
                        "V2's own recipe.")
    table = read_table(study, name)
    pooled = table[table["run"] == POOLED].iloc[0]
    return markdown(f"**What this shows.** V2 with its own recipe ({p.student_own_preset}) averages hard AP "
                    f"{pooled['AP hard %']:.1f} % over {_seeds(pooled['arm seeds'])}, with the shared recipe "
                    f"({p.student_preset}) {pooled['vs AP hard %']:.1f} % over {_seeds(pooled['vs seeds'])}. Pooled "
                    f"difference (95 % {POOLED_METHOD}): {pooled_sentence(pooled)}. "
                    + _recipe_reading(pooled["hard verdict"]))


def _seeds(count) -> str:
    return f"{int(count)} seed" + "s" * (int(count) > 1)


def _recipe_reading(hard_verdict: str) -> str:
    from ffcore.eval.bootstrap import INSIDE_NOISE, ONE_SEED

    if hard_verdict == "higher":
        return ("On hard faces the shared recipe handicaps V2: its comparisons with the shared recipe understate "
                "what V2 reaches with its own.")
    if hard_verdict == "lower":
        # a schedule written for hundreds of epochs, run for a few, under-trains: that is all "lower" shows
        return ("On hard faces V2's own recipe does worse here, at a length its schedule (written for the thesis's "
                "400 epochs) was not made for: that shows the schedule at this length under-trains, not that the "
                "shared recipe is what holds V2 back.")
    if hard_verdict in (INSIDE_NOISE, ONE_SEED):
        return "On hard faces no difference between the recipes is established."
    return f"On hard faces: {hard_verdict}."
