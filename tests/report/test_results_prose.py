"""The results page's prose (docs/results.md) states only what the committed tables hold: every interval written in a paragraph
(outside the generated results blocks) is a row of a committed table, and the rerun's agreement count is
the one the committed tables give."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ffcore.report.tables import read_table_csv

REPO = Path(__file__).resolve().parents[2]
SETTINGS = ("easy", "medium", "hard")
# "+2.83 [+0.45, +5.05]", "−22.9 [−25.5, −20.4]", "57.3 [51.3, 64.3]" (the README writes − for minus)
INTERVAL = re.compile(r"([+−-]?\d+\.\d+) \[([+−-]?\d+\.\d+), ([+−-]?\d+\.\d+)\]")
TRIPLES = [("d{s} AP pts", "d{s} CI low", "d{s} CI high"), ("AP {s} %", "{s} CI low", "{s} CI high")]
FLAT = [("difference", "low", "high"), ("committed difference", "committed low", "committed high"),
        ("dhard AP pts vs control", "dhard vs control CI low", "dhard vs control CI high")]


def _number(text: str) -> float:
    return float(text.replace("−", "-"))


def _prose(text: str) -> str:
    """The README without its generated results blocks (checked by tests/test_readme_results.py)."""
    return re.sub(r"<!-- results:[\w-]+:begin -->.*?<!-- results:[\w-]+:end -->", "", text, flags=re.S)


def _committed_intervals() -> list[tuple[float, float, float]]:
    found = []
    paths = [*REPO.glob("results/**/tables/*.csv"), *REPO.glob("results/**/pooled_recomputed.csv")]
    for path in paths:
        table = read_table_csv(path)
        names = [tuple(c.format(s=s) for c in triple) for triple in TRIPLES for s in SETTINGS] + FLAT
        for columns in names:
            if all(c in table.columns for c in columns):
                values = table[list(columns)].apply(pd.to_numeric, errors="coerce").dropna()
                found += [tuple(row) for row in values.itertuples(index=False)]
    return found


def test_every_interval_in_the_readme_prose_is_a_committed_table_row():
    intervals = INTERVAL.findall(_prose((REPO / "docs" / "results.md").read_text()))
    assert intervals, "no interval found in the prose of docs/results.md: the pattern no longer matches"
    committed = _committed_intervals()
    for written in intervals:
        decimals = len(written[0].split(".")[1])
        value = tuple(_number(x) for x in written)
        assert any(all(abs(round(c, decimals) - v) < 1e-9 or abs(c - v) <= 0.5 * 10 ** -decimals + 1e-9
                       for c, v in zip(row, value)) for row in committed), \
            f"docs/results.md: {' '.join(written)} is not a row of any committed table"


def test_the_rerun_agreement_sentence_counts_the_committed_verdicts():
    from ffcore.report.agreement import compare_results

    table = compare_results(REPO / "results/synthetic/rerun_seed_offset_100/tables", REPO / "results/synthetic/tables")
    both = table[table["in"] == "both"]
    dependent = both[both["data dependent"]]
    text = " ".join((REPO / "docs" / "results.md").read_text().split())
    assert (f"{len(both) - len(dependent)} of the {len(both)} stated verdicts are \"one seed: not established\" "
            f"on both sides by construction, and of the other {len(dependent)}") in text
    assert f"**{int(dependent['agree'].sum())} agree**" in text
