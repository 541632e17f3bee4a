"""Committed pooled rows recomputed from their per-seed rows with the two-stage interval: the seed part
exact, the shared image part bounded above by the mean per-seed image variance; the committed
recomputations equal what the committed tables give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ffcore.report.tables import read_table_csv
from ffcore.study.repool import repooled_row, repooled_table

REPO = Path(__file__).resolve().parents[2]
COMMITTED = [path.parent for path in sorted((REPO / "results").rglob("pooled_recomputed.csv"))]


def _pairs(differences, half_widths):
    rows = []
    for d, h in zip(differences, half_widths):
        rows.append({f"d{s} AP pts": d for s in ("easy", "medium", "hard")}
                    | {f"d{s} CI low": d - h for s in ("easy", "medium", "hard")}
                    | {f"d{s} CI high": d + h for s in ("easy", "medium", "hard")})
    return pd.DataFrame(rows)


def test_the_recomputed_interval_is_the_t_interval_over_seeds_widened_by_the_bounded_image_part():
    differences, half = np.array([2.0, 1.0, 4.0]), np.array([1.96, 1.96, 1.96])   # image sd 1 point per pair
    row = repooled_row(_pairs(differences, half), "hard", images=100)
    seed_half = stats.t.ppf(0.975, 2) * differences.std(ddof=1) / np.sqrt(3)
    image_half = stats.t.ppf(0.975, 99) * 1.0
    expected = np.hypot(seed_half, image_half)
    assert (row["low"], row["high"]) == pytest.approx((differences.mean() - expected, differences.mean() + expected),
                                                      abs=0.006)
    assert row["verdict"] == "inside the noise"
    clear = repooled_row(_pairs(np.array([8.0, 8.5, 7.5]), half), "hard", images=100)
    assert clear["verdict"] == "higher" and clear["low"] > 0


def test_one_seed_comparisons_stay_not_established(tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    pair = {"comparison": "a vs b", "run": "a", "seed": 0, "seeds": "1 vs 1", "arm seeds": np.nan, "vs seeds": np.nan}
    pooled = {"comparison": "a vs b", "run": "pooled", "seed": -1, "seeds": "5 vs 1", "arm seeds": 5, "vs seeds": 1}
    for row in (pair, pooled):
        for s in ("easy", "medium", "hard"):
            row.update({f"d{s} AP pts": -3.0, f"d{s} CI low": -4.0, f"d{s} CI high": -2.0,
                        f"{s} verdict": "one seed: not established"})
    (tables / "v2_vs_v1.csv").write_text("# SYNTHETIC DATA (not WIDER FACE) | profile test\n"
                                         + pd.DataFrame([pair, pooled]).to_csv(index=False))
    table = repooled_table(tables, images=100)
    assert (table["verdict"] == "one seed: not established").all() and not table["verdict changed"].any()


@pytest.mark.parametrize("folder", COMMITTED, ids=lambda p: str(p.relative_to(REPO)))
def test_committed_recomputations_follow_from_the_committed_tables(folder):
    from ffcore.study.repool import evaluation_images

    committed = read_table_csv(folder / "pooled_recomputed.csv")
    again = repooled_table(folder / "tables", evaluation_images(folder / "tables"))
    pd.testing.assert_frame_equal(committed.reset_index(drop=True), again.reset_index(drop=True),
                                  check_dtype=False, atol=0.011)
