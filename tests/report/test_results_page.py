"""The results page's blocks (docs/results.md) are what the committed tables give (no number typed by hand)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("profile", ["synthetic", "synthetic_long", "synthetic_seeds"])
def test_the_results_page_block_equals_the_committed_tables(monkeypatch, profile):
    from ffcore.report.results_blocks import RESULTS_PAGE, block, results_markdown

    monkeypatch.setenv("FFCORE_RESULTS", str(REPO / "results"))
    tables = REPO / "results" / profile / "tables"
    if not (tables / "v1_ap.csv").is_file():
        pytest.skip(f"no committed {profile} run")
    assert block(profile, (REPO / RESULTS_PAGE).read_text()) == results_markdown(profile), (
        f"{RESULTS_PAGE}'s results block differs from results/{profile}/tables: run "
        f"`ffcore thesis --profile {profile} --results-page {RESULTS_PAGE}`")


def test_a_page_without_the_block_is_an_error_naming_the_markers():
    from ffcore.report.results_blocks import block

    with pytest.raises(ValueError, match="results:smoke:begin"):
        block("smoke", "# nothing here\n")


def test_rewriting_fills_an_empty_block_between_its_own_markers(tmp_path, monkeypatch):
    from ffcore.report import results_blocks as readme_results

    monkeypatch.setattr(readme_results, "results_markdown", lambda profile: f"table of {profile}")
    page = tmp_path / "results.md"
    page.write_text("# title\n\n<!-- results:a:begin -->\n\n<!-- results:a:end -->\n"
                      "<!-- results:b:begin -->\nold\n<!-- results:b:end -->\nold\n")
    readme_results.rewrite_page("a", page)
    readme_results.rewrite_page("b", page)
    assert page.read_text() == ("# title\n\n<!-- results:a:begin -->\ntable of a\n<!-- results:a:end -->\n"
                                  "<!-- results:b:begin -->\ntable of b\n<!-- results:b:end -->\nold\n")
    readme_results.rewrite_page("a", page)   # idempotent
    assert readme_results.block("a", page.read_text()) == "table of a"


def test_the_readme_links_the_results_page_and_holds_no_block():
    from ffcore.report.results_blocks import RESULTS_PAGE

    readme = (REPO / "README.md").read_text()
    assert f"]({RESULTS_PAGE})" in readme and "<!-- results:" not in readme


def test_the_command_line_rewrites_a_page(tmp_path, monkeypatch, capsys):
    from ffcore.cli import main
    from ffcore.report import results_blocks as readme_results

    monkeypatch.setattr(readme_results, "results_markdown", lambda profile: f"table of {profile}")
    page = tmp_path / "results.md"
    page.write_text("<!-- results:synthetic:begin -->\nold\n<!-- results:synthetic:end -->\n")
    assert main(["thesis", "--profile", "synthetic", "--results-page", str(page)]) == 0
    assert readme_results.block("synthetic", page.read_text()) == "table of synthetic"
    assert main(["thesis", "--profile", "synthetic", "--results-page", str(tmp_path / "missing.md")]) == 2
