"""The README's results block, generated from a profile's tables: no number in it is typed by hand.

`results_markdown(profile)` renders, from results/<profile>/tables/:

- the AP of every model of notebook 01's and 03's AP tables (`v1_ap`, `distillation_ap`) with its 95 %
  interval over the evaluation images;
- every comparison that carries a verdict over training seeds: the `pooled` rows of the seed
  comparisons (`distillation_comparison`, `v2_vs_v1`), and the one-part swaps of `ablations`,
  with the difference, its interval and the verdict as the tables state them;
- the run's wall time, from its summary (`ffcore.study.numbers.run_summary`).

The README holds the block between `<!-- results:<profile>:begin -->` and `<!-- results:<profile>:end -->`;
`ffcore thesis --profile P --readme README.md` rewrites it and tests/test_readme_results.py checks
that the committed README equals what the committed tables give.
"""

from __future__ import annotations

import re
from pathlib import Path

from ffcore.paths import results_dir
from ffcore.provenance import read_table_csv

SETTINGS = ("easy", "medium", "hard")
AP_TABLES = ("v1_ap", "distillation_ap")
SEED_COMPARISONS = ("distillation_comparison", "v2_vs_v1")


def _markers(profile: str) -> tuple[str, str]:
    return f"<!-- results:{profile}:begin -->", f"<!-- results:{profile}:end -->"


def _ap_cell(row, setting: str) -> str:
    return f"{row[f'AP {setting} %']:.1f} [{row[f'{setting} CI low']:.1f}, {row[f'{setting} CI high']:.1f}]"


def _difference_cell(row, setting: str) -> str:
    return (f"{row[f'd{setting} AP pts']:+.1f} [{row[f'd{setting} CI low']:+.1f}, {row[f'd{setting} CI high']:+.1f}], "
            f"{row[f'{setting} verdict']}")


def results_markdown(profile: str) -> str:
    tables = results_dir() / profile / "tables"
    lines = ["| model (trained on) | easy | medium | hard |", "|---|---|---|---|"]
    seen = set()
    for name in AP_TABLES:
        path = tables / f"{name}.csv"
        if not path.is_file():
            continue
        for _, row in read_table_csv(path).iterrows():
            if row["run"] in seen:
                continue
            seen.add(row["run"])
            lines.append(f"| {row['run']} ({row['trained on']}) | " + " | ".join(_ap_cell(row, s) for s in SETTINGS)
                         + " |")
    lines += ["", "| comparison (seeds) | Δ easy | Δ medium | Δ hard |", "|---|---|---|---|"]
    for name in SEED_COMPARISONS:
        path = tables / f"{name}.csv"
        if not path.is_file():
            continue
        table = read_table_csv(path)
        for _, row in table[table["run"] == "pooled"].iterrows():
            lines.append(f"| {row['comparison']}, pooled ({row['seeds']}) | "
                         + " | ".join(_difference_cell(row, s) for s in SETTINGS) + " |")
    path = tables / "ablations.csv"
    if path.is_file():
        table = read_table_csv(path)
        for _, row in table[table["vs"].fillna("") != ""].iterrows():
            lines.append(f"| {row['model']} vs {row['vs']} | " + " | ".join(_difference_cell(row, s) for s in SETTINGS)
                         + " |")
    from ffcore.study.numbers import run_summary, wall_times

    summary = run_summary(profile)
    if summary is not None:
        times = wall_times(summary)
        lines += ["", f"Wall time ({summary.name}): " + ", ".join(f"{name} {minutes:.1f} min"
                                                                  for name, minutes in times.items()) + "."]
    source = f"results/{profile}/tables/ ({', '.join((*AP_TABLES, *SEED_COMPARISONS, 'ablations'))})"
    return "\n".join([f"AP % with its 95 % interval; differences in AP points. Generated from {source} by "
                      f"`ffcore thesis --profile {profile} --readme README.md`.", "", *lines])


def block(profile: str, text: str) -> str:
    """The README's current block for `profile` (between the markers), or an error naming them."""
    begin, end = _markers(profile)
    match = re.search(re.escape(begin) + r"\n(.*?)\n" + re.escape(end), text, re.S)
    if not match:
        raise ValueError(f"no results block for profile {profile!r}: add the lines {begin} and {end}")
    return match.group(1)


def rewrite_readme(profile: str, readme: str | Path) -> Path:
    path = Path(readme)
    text = path.read_text()
    old = block(profile, text)
    path.write_text(text.replace(old, results_markdown(profile), 1))
    return path
