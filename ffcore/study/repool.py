"""Pooled rows of committed seed comparisons, recomputed with the two-stage t interval from their own
per-seed rows, for results written before that interval replaced the two-level percentile bootstrap.

A seed comparison's table (`ffcore.study.comparisons.seed_comparison`) keeps, for every seed pair, the
paired difference and its 95 % image-bootstrap interval. That gives the seed part of the two-stage
interval exactly (the spread of the per-seed differences) and each pair's image variance (from its
interval's width, (high - low) / (2 z)), but not the covariance between the pairs' image resamples
that the shared image part needs. The shared part is bounded instead: a covariance is at most the
mean of the two variances (Cauchy-Schwarz), so the mean per-pair image variance bounds it from above,
and the recomputed interval is at least as wide as the one the runs themselves would give. A
"higher" / "lower" that survives it is established; one that does not is "inside the noise" here,
and a rerun that evaluates the runs again gives the exact interval.

Only comparisons paired by seed are recomputable (every seed of both arms has its pair row); an arm
with one seed stays "one seed: not established", as it is in the run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ffcore.eval.bootstrap import INSIDE_NOISE, ONE_SEED
from ffcore.eval.seed_intervals import TwoStageEstimate
from ffcore.report.tables import read_table_csv

SETTINGS = ("easy", "medium", "hard")
POOLED = "pooled"


def _verdict(estimate: float, low: float, high: float) -> str:
    if low <= 0.0 <= high:
        return INSIDE_NOISE
    return "higher" if estimate > 0 else "lower"


def repooled_row(pairs: pd.DataFrame, setting: str, images: int, level: float = 0.95) -> dict:
    """The two-stage interval of one comparison and setting from its per-seed pair rows (AP points)."""
    differences = pairs[f"d{setting} AP pts"].to_numpy(dtype=float)
    widths = (pairs[f"d{setting} CI high"] - pairs[f"d{setting} CI low"]).to_numpy(dtype=float)
    z = float(stats.norm.ppf(0.5 + level / 2))
    image_variances = (widths / (2 * z)) ** 2
    n = differences.size
    estimate = TwoStageEstimate(float(differences.mean()), float(differences.var(ddof=1)) / n,
                                float(image_variances.mean()), float(n - 1), float(images - 1))
    low, high = estimate.bounds(level)
    return {"difference": round(estimate.estimate, 2), "low": round(low, 2), "high": round(high, 2),
            "verdict": _verdict(estimate.estimate, low, high),
            "seed sd": round(float(differences.std(ddof=1)), 2)}


def repooled_table(tables_dir: Path, images: int, level: float = 0.95) -> pd.DataFrame:
    """Every pooled row of every seed-comparison table in `tables_dir`: the committed interval and verdict
    beside the recomputed ones (see the module docstring)."""
    rows = []
    for path in sorted(Path(tables_dir).glob("*.csv")):
        table = read_table_csv(path)
        if not {"comparison", "run", "seed"} <= set(table.columns):
            continue
        for comparison, part in table.groupby("comparison", sort=False):
            pooled = part[part["run"] == POOLED]
            if pooled.empty:
                continue
            pooled = pooled.iloc[0]
            pairs = part[part["run"] != POOLED]
            counts = (int(pooled["arm seeds"]), int(pooled["vs seeds"]))
            paired = counts[0] == counts[1] == len(pairs) and counts[0] > 1
            for s in SETTINGS:
                row = {"table": path.stem, "comparison": comparison, "seeds": pooled["seeds"], "setting": s,
                       "committed difference": pooled[f"d{s} AP pts"], "committed low": pooled[f"d{s} CI low"],
                       "committed high": pooled[f"d{s} CI high"], "committed verdict": pooled[f"{s} verdict"]}
                if paired:
                    new = repooled_row(pairs, s, images, level)
                    row.update({"difference": new["difference"], "low": new["low"], "high": new["high"],
                                "verdict": new["verdict"], "seed sd": new["seed sd"]})
                else:
                    row.update({"difference": pooled[f"d{s} AP pts"], "low": np.nan, "high": np.nan,
                                "verdict": ONE_SEED if min(counts) < 2 else "not recomputable: seeds not paired",
                                "seed sd": np.nan})
                row["verdict changed"] = row["verdict"] != row["committed verdict"]
                rows.append(row)
    return pd.DataFrame(rows)


def evaluation_images(tables_dir: Path) -> int:
    """How many images the folder's runs were evaluated on (the `images` column of its AP table)."""
    path = Path(tables_dir) / "v1_ap.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the AP table that says how many evaluation images the runs used is missing")
    counts = set(read_table_csv(path)["images"].dropna().astype(int))
    if len(counts) != 1:
        raise ValueError(f"{path}: the runs were evaluated on different image counts {sorted(counts)}")
    return counts.pop()


def write_repooled(results_folder: Path) -> Path:
    """`<results_folder>/pooled_recomputed.csv` from `<results_folder>/tables`, with the tables' data label
    (their first line) and how the interval was recomputed as its header lines."""
    folder = Path(results_folder)
    tables_dir = folder / "tables"
    table = repooled_table(tables_dir, evaluation_images(tables_dir))
    label = (tables_dir / "v1_ap.csv").read_text().splitlines()[0]
    out = folder / "pooled_recomputed.csv"
    with open(out, "w") as handle:
        handle.write(f"{label} | pooled rows recomputed from the per-seed rows of {tables_dir.as_posix()}: "
                     "two-stage t interval, shared image part bounded by the mean per-seed image variance "
                     "(ffcore.study.repool)\n")
        table.to_csv(handle, index=False)
    return out
