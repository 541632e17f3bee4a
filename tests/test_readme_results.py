"""The README's results block is what the committed tables give (no number typed by hand)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("profile", ["synthetic", "synthetic_long", "synthetic_seeds"])
def test_the_readme_results_block_equals_the_committed_tables(monkeypatch, profile):
    from ffcore.study.readme_results import block, results_markdown

    monkeypatch.setenv("FFCORE_RESULTS", str(REPO / "results"))
    tables = REPO / "results" / profile / "tables"
    if not (tables / "v1_ap.csv").is_file():
        pytest.skip(f"no committed {profile} run")
    assert block(profile, (REPO / "README.md").read_text()) == results_markdown(profile), (
        f"README.md's results block differs from results/{profile}/tables: run "
        f"`ffcore thesis --profile {profile} --readme README.md`")


def test_a_readme_without_the_block_is_an_error_naming_the_markers():
    from ffcore.study.readme_results import block

    with pytest.raises(ValueError, match="results:smoke:begin"):
        block("smoke", "# nothing here\n")
