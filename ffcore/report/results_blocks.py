"""The results page's blocks (docs/results.md), generated from a profile's tables: no number in them is typed by hand.

`results_markdown(profile)` renders, from results/<profile>/tables/:

- the AP of every model of notebook 01's and 03's AP tables (`v1_ap`, `distillation_ap`) with its 95 %
  interval over the evaluation images;
- where the profile trains the budget curve, the AP of each arm at each training length
  (`training_budget`);
- every comparison that carries a verdict over training seeds: the `pooled` rows of the seed
  comparisons (`distillation_comparison`, `v2_vs_v1`, `training_budget_differences`), the one-part
  swaps of `ablations` and V2's variants (`v2_variants`), with the difference, its interval and the
  verdict as the tables state them;
- the run's wall time, from its summary (`ffcore.report.numbers.run_summary`).

docs/results.md holds each profile's block between `<!-- results:<profile>:begin -->` and
`<!-- results:<profile>:end -->`; `ffcore thesis --profile P --results-page docs/results.md` rewrites it and
tests/report/test_results_page.py checks that the committed page equals what the committed tables give.
"""

from __future__ import annotations

import re
from pathlib import Path

from ffcore.data.ground_truth import SETTINGS
from ffcore.paths import results_dir
from ffcore.report.tables import read_table_csv

AP_TABLES = ("v1_ap", "distillation_ap")
SEED_COMPARISONS = ("distillation_comparison", "v2_vs_v1", "training_budget_differences")
PAIRED_TABLES = ("ablations", "v2_variants")   # a row per model with its `vs` reference
BUDGET_TABLE = "training_budget"
RESULTS_PAGE = "docs/results.md"   # relative to the repository root


def _markers(profile: str) -> tuple[str, str]:
    return f"<!-- results:{profile}:begin -->", f"<!-- results:{profile}:end -->"


def _ap_cell(row, setting: str) -> str:
    return f"{row[f'AP {setting} %']:.1f} [{row[f'{setting} CI low']:.1f}, {row[f'{setting} CI high']:.1f}]"


def _difference_cell(row, setting: str) -> str:
    return (f"{row[f'd{setting} AP pts']:+.1f} [{row[f'd{setting} CI low']:+.1f}, {row[f'd{setting} CI high']:+.1f}], "
            f"{row[f'{setting} verdict']}")


def _trained_table(path: Path):
    """The table at `path`, or None where the profile did not write it or wrote its one-row "not trained" note."""
    if not path.is_file():
        return None
    table = read_table_csv(path)
    return None if "status" in table.columns else table


def results_markdown(profile: str) -> str:
    tables = results_dir() / profile / "tables"
    used = []
    lines = ["| model (trained on) | easy | medium | hard |", "|---|---|---|---|"]
    seen = set()
    for name in AP_TABLES:
        table = _trained_table(tables / f"{name}.csv")
        if table is None:
            continue
        used.append(name)
        for _, row in table.iterrows():
            if row["run"] in seen:
                continue
            seen.add(row["run"])
            lines.append(f"| {row['run']} ({row['trained on']}) | " + " | ".join(_ap_cell(row, s) for s in SETTINGS)
                         + " |")
    budget = _trained_table(tables / f"{BUDGET_TABLE}.csv")
    if budget is not None:
        used.append(BUDGET_TABLE)
        lines += ["", "| training budget: model, epochs (seeds) | easy | medium | hard |", "|---|---|---|---|"]
        for _, row in budget.iterrows():
            lines.append(f"| {row['arm']}, {row['epochs']} epochs ({row['seeds']}) | "
                         + " | ".join(_ap_cell(row, s) for s in SETTINGS) + " |")
    lines += ["", "| comparison (seeds) | Δ easy | Δ medium | Δ hard |", "|---|---|---|---|"]
    for name in SEED_COMPARISONS:
        table = _trained_table(tables / f"{name}.csv")
        if table is None:
            continue
        used.append(name)
        for _, row in table[table["run"] == "pooled"].iterrows():
            lines.append(f"| {row['comparison']}, pooled ({row['seeds']}) | "
                         + " | ".join(_difference_cell(row, s) for s in SETTINGS) + " |")
    for name in PAIRED_TABLES:
        table = _trained_table(tables / f"{name}.csv")
        compared = None if table is None else table[table["vs"].astype(object).fillna("") != ""]
        if compared is None or compared.empty:   # only the reference row: the profile trains none of them
            continue
        used.append(name)
        for _, row in compared.iterrows():
            seeds = f" ({row['seeds']})" if "seeds" in table.columns else ""
            lines.append(f"| {row['model']} vs {row['vs']}{seeds} | "
                         + " | ".join(_difference_cell(row, s) for s in SETTINGS) + " |")
    from ffcore.report.numbers import run_summary, wall_times
    from ffcore.report.summary import DURATION_LOG, measured_parts

    summary = run_summary(profile)
    parts = measured_parts(profile)
    if summary is not None:
        times = wall_times(summary)
        # a run made in parts: the summary is the last part's, which may have reused the trainings
        what = "Wall time of the run that wrote these artifacts" if parts and summary.name == "summary.md" else "Wall time"
        lines += ["", f"{what} ({summary.name}): " + ", ".join(f"{name} {minutes:.1f} min"
                                                            for name, minutes in times.items()) + "."]
    if parts:
        each = f" in {len(parts)} parts ({' + '.join(f'{seconds / 60:.1f}' for seconds in parts)} min)"
        lines += ["", f"Duration from empty caches ({DURATION_LOG}, GNU time): {sum(parts) / 60:.1f} min"
                      f"{each if len(parts) > 1 else ''}."]
    source = f"results/{profile}/tables/ ({', '.join(used)})"
    return "\n".join([f"AP % with its 95 % interval; differences in AP points. A model row is one training run, "
                      "the model's first training seed (seed 0; the image interval only); a pooled row uses every "
                      f"seed of both arms. Generated from {source} by "
                      f"`ffcore thesis --profile {profile} --results-page {RESULTS_PAGE}`.", "", *lines])


def _block_match(profile: str, text: str) -> re.Match:
    begin, end = _markers(profile)
    match = re.search(re.escape(begin) + r"\n(.*?)\n?" + re.escape(end), text, re.S)
    if not match:
        raise ValueError(f"no results block for profile {profile!r}: add the lines {begin} and {end}")
    return match


def block(profile: str, text: str) -> str:
    """The page's current block for `profile` (between the markers), or an error naming them."""
    return _block_match(profile, text).group(1)


def rewrite_page(profile: str, page: str | Path) -> Path:
    """Replace the block between `profile`'s markers in `page` (an empty block too) with what its tables give."""
    path = Path(page)
    text = path.read_text()
    match = _block_match(profile, text)
    path.write_text(text[:match.start(1)] + results_markdown(profile) + "\n" + text[match.end(1):].lstrip("\n"))
    return path
