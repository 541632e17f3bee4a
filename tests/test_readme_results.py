"""The README's results block is what the committed tables give (no number typed by hand)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_readme_results_block_equals_the_committed_tables(monkeypatch):
    from ffcore.study.readme_results import block, results_markdown

    monkeypatch.setenv("FFCORE_RESULTS", str(REPO / "results"))
    tables = REPO / "results" / "synthetic" / "tables"
    if not (tables / "v1_ap.csv").is_file():
        pytest.skip("no committed synthetic run")
    assert block("synthetic", (REPO / "README.md").read_text()) == results_markdown("synthetic"), (
        "README.md's results block differs from results/synthetic/tables: run "
        "`ffcore thesis --profile synthetic --readme README.md`")


def test_a_readme_without_the_block_is_an_error_naming_the_markers():
    from ffcore.study.readme_results import block

    with pytest.raises(ValueError, match="results:smoke:begin"):
        block("smoke", "# nothing here\n")
