"""The README's results block is what the committed tables give (no number typed by hand)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("profile", ["synthetic", "synthetic_long", "synthetic_seeds"])
def test_the_readme_results_block_equals_the_committed_tables(monkeypatch, profile):
    from ffcore.report.results_blocks import block, results_markdown

    monkeypatch.setenv("FFCORE_RESULTS", str(REPO / "results"))
    tables = REPO / "results" / profile / "tables"
    if not (tables / "v1_ap.csv").is_file():
        pytest.skip(f"no committed {profile} run")
    assert block(profile, (REPO / "README.md").read_text()) == results_markdown(profile), (
        f"README.md's results block differs from results/{profile}/tables: run "
        f"`ffcore thesis --profile {profile} --readme README.md`")


def test_a_readme_without_the_block_is_an_error_naming_the_markers():
    from ffcore.report.results_blocks import block

    with pytest.raises(ValueError, match="results:smoke:begin"):
        block("smoke", "# nothing here\n")


def test_rewriting_fills_an_empty_block_between_its_own_markers(tmp_path, monkeypatch):
    from ffcore.report import results_blocks as readme_results

    monkeypatch.setattr(readme_results, "results_markdown", lambda profile: f"table of {profile}")
    readme = tmp_path / "README.md"
    readme.write_text("# title\n\n<!-- results:a:begin -->\n\n<!-- results:a:end -->\n"
                      "<!-- results:b:begin -->\nold\n<!-- results:b:end -->\nold\n")
    readme_results.rewrite_readme("a", readme)
    readme_results.rewrite_readme("b", readme)
    assert readme.read_text() == ("# title\n\n<!-- results:a:begin -->\ntable of a\n<!-- results:a:end -->\n"
                                  "<!-- results:b:begin -->\ntable of b\n<!-- results:b:end -->\nold\n")
    readme_results.rewrite_readme("a", readme)   # idempotent
    assert readme_results.block("a", readme.read_text()) == "table of a"
