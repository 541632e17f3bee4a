"""A run checked against another: every stated verdict of one results folder beside the other's.

A *stated verdict* is a table row with `<setting> verdict`, `d<setting> AP pts` and its interval
(`d<setting> CI low` / `high`): the ablation rows, the per-seed and `pooled` rows of the seed
comparisons. Rows are matched by what they compare, not by run name, so a second run with a
disjoint set of seeds (`seed_offset`) lines up with the first: seeds are stripped from names
(`featherface_v2_seed101` -> `featherface_v2`) and a `pooled` row is keyed by its comparison.
Per-seed rows are left out (their seeds differ by design); what is compared is what the
narrative states.

`compare_results(a, b)` returns one row per verdict found in both: the two differences and
intervals, the two verdicts, whether the direction is the same (the sign of the difference),
whether the intervals overlap, `agree` (the same verdict) and `data dependent`: whether the
data could have moved the verdict on both sides. "one seed: not established" (or "no interval")
is fixed by the design, not read from the data, so two such verdicts agree by construction and
`describe_agreement` counts agreement only over the data-dependent ones. `tables_at(ref, profile)` reads a
results folder, or the tables of a git ref (`git show <ref>:results/<profile>/tables/...`).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from ffcore.data.ground_truth import SETTINGS
from ffcore.eval.bootstrap import NO_INTERVAL, ONE_SEED
from ffcore.report.tables import read_table_csv

_SEED = re.compile(r"_seed\d+$")


def _unseeded(name) -> str:
    return _SEED.sub("", str(name)) if isinstance(name, str) else ""


def stated_verdicts(tables_dir: Path) -> pd.DataFrame:
    """Every verdict row of every table in `tables_dir` (per-seed rows of seed comparisons excluded)."""
    rows = []
    for path in sorted(Path(tables_dir).glob("*.csv")):
        table = read_table_csv(path)
        if not all(f"{s} verdict" in table for s in SETTINGS):
            continue
        name_column = "run" if "run" in table else table.columns[0]
        vs = table["vs"].astype(object).fillna("") if "vs" in table else pd.Series([""] * len(table))
        for index, entry in table.iterrows():
            run = entry[name_column]
            if run == "pooled":
                key = f"pooled: {_unseeded(entry.get('comparison', ''))}"
            elif "comparison" in table and entry.get("seed", -1) != -1:
                continue      # one seed's pair: the pooled row states the verdict
            elif not vs[index]:
                continue      # the reference row of an ablation table
            else:
                key = f"{_unseeded(run)} vs {_unseeded(vs[index])}"
            for s in SETTINGS:
                rows.append({"table": path.stem, "comparison": key, "setting": s,
                             "difference": entry[f"d{s} AP pts"], "low": entry[f"d{s} CI low"],
                             "high": entry[f"d{s} CI high"], "verdict": entry[f"{s} verdict"]})
    return pd.DataFrame(rows, columns=["table", "comparison", "setting", "difference", "low", "high", "verdict"])


def compare_results(tables_a: Path, tables_b: Path) -> pd.DataFrame:
    """The verdicts of two results folders side by side (see the module docstring)."""
    a, b = stated_verdicts(tables_a), stated_verdicts(tables_b)
    keys = ["table", "comparison", "setting"]
    joined = a.merge(b, on=keys, suffixes=(" A", " B"), how="outer", indicator=True)
    joined["in"] = joined.pop("_merge").map({"both": "both", "left_only": "A only", "right_only": "B only"})
    both = joined["in"] == "both"
    joined["same direction"] = both & ((joined["difference A"] > 0) == (joined["difference B"] > 0))
    joined["intervals overlap"] = both & (joined["low A"] <= joined["high B"]) & (joined["low B"] <= joined["high A"])
    joined["agree"] = both & (joined["verdict A"] == joined["verdict B"])
    by_design = {ONE_SEED, NO_INTERVAL}
    joined["data dependent"] = both & ~joined["verdict A"].isin(by_design) & ~joined["verdict B"].isin(by_design)
    return joined.sort_values(keys).reset_index(drop=True)


def tables_at(reference: str, profile: str, repo: Path) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """(tables folder, temporary folder to keep alive) for a results folder or a git ref."""
    path = Path(reference)
    for candidate in (path / profile / "tables", path / "tables", path):
        if candidate.is_dir() and any(candidate.glob("*.csv")):
            return candidate, None
    prefix = f"results/{profile}/tables/"
    try:
        listing = subprocess.run(["git", "ls-tree", "--name-only", f"{reference}:{prefix}"], cwd=repo, check=True,
                                 capture_output=True, text=True).stdout.split()
    except subprocess.CalledProcessError as exc:
        raise FileNotFoundError(f"--compare-with {reference!r}: neither a results folder with CSV tables nor a git "
                                f"ref holding {prefix} ({exc.stderr.strip()})") from exc
    holder = tempfile.TemporaryDirectory(prefix="ffcore_compare_")
    for name in listing:
        if name.endswith(".csv"):
            text = subprocess.run(["git", "show", f"{reference}:{prefix}{name}"], cwd=repo, check=True,
                                  capture_output=True, text=True).stdout
            (Path(holder.name) / name).write_text(text)
    return Path(holder.name), holder


def describe_agreement(table: pd.DataFrame) -> str:
    """Agreement over the verdicts the data decide on both sides; the ones fixed by design counted apart."""
    both = table[table["in"] == "both"]
    dependent = both[both["data dependent"]]
    by_design = len(both) - len(dependent)
    return (f"{int(dependent['agree'].sum())} of {len(dependent)} data-dependent verdicts agree "
            f"({int(dependent['same direction'].sum())} have the same direction, "
            f"{int(dependent['intervals overlap'].sum())} overlapping intervals); {by_design} more are "
            f"'{ONE_SEED}' or '{NO_INTERVAL}' on at least one side, fixed by the design rather than the data; "
            f"{int((table['in'] != 'both').sum())} are stated in one run only")
