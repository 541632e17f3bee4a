"""Every number the chapter cites is a macro generated from a table (ffcore.report.numbers)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from ffcore.report.numbers import (check_numbers, cited_numbers, format_number, macro_name, printed_matches, wall_times,
                                  write_numbers)

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "thesis_figures" / "synthetic" / "numbers.json"


@pytest.fixture
def synthetic_results(monkeypatch):
    monkeypatch.setenv("FFCORE_RESULTS", str(REPO / "results"))


def test_macro_names_are_letters_only():
    assert macro_name("v1_ap", "retinaface_mnet025_widerface", "AP hard %") == \
        "VOneApRetinafaceMnetZeroTwoFiveWiderfaceApHard"
    assert macro_name("run minutes", "total") == "RunMinutesTotal"
    with pytest.raises(ValueError):
        macro_name("%", "")


def test_printed_values_are_the_values_rounded():
    assert printed_matches("94.3", 94.34) and printed_matches("+4.7", 4.69) and printed_matches("592,371", 592371)
    assert not printed_matches("94.4", 94.34)


COMMITTED_PROFILES = ("synthetic", "synthetic_long", "synthetic_seeds")


def _committed(profile: str) -> Path:
    path = REPO / "thesis_figures" / profile / "numbers.json"
    if not path.is_file():
        pytest.skip(f"no committed {profile} chapter")
    return path


@pytest.mark.parametrize("profile", COMMITTED_PROFILES)
def test_every_committed_number_agrees_with_its_source(synthetic_results, profile):
    committed = _committed(profile)
    entries = json.loads(committed.read_text())
    assert check_numbers(profile, committed) == []
    tex = (committed.parent / "numbers.tex").read_text()
    assert set(re.findall(r"\\newcommand\{\\([A-Za-z]+)\}", tex)) == set(entries)
    assert all(set(e) == {"artifact", "row", "column", "value"} for e in entries.values())


@pytest.mark.parametrize("profile", COMMITTED_PROFILES)
def test_committed_numbers_are_up_to_date(synthetic_results, tmp_path, profile):
    committed = _committed(profile)
    written = write_numbers(profile, tmp_path)
    assert json.loads(written["json"].read_text()) == json.loads(committed.read_text()), \
        f"thesis_figures/{profile}/numbers.json is stale: run `ffcore thesis --profile {profile} --no-build`"


def test_the_cited_numbers_cover_ap_gains_and_duration(synthetic_results):
    by_macro = {n.macro: n for n in cited_numbers("synthetic")}
    for difficulty in ("Easy", "Medium", "Hard"):
        assert f"VOneApFeatherfaceVOneAp{difficulty}" in by_macro
        # the seed comparison's rows are named by their run: the per-seed pairs and the pooled row
        assert f"DistillationComparisonPooledD{difficulty.lower()}ApPts" in by_macro
        assert f"DistillationComparisonFeatherfaceVTwoDistilledD{difficulty.lower()}ApPts" in by_macro
    total = by_macro["RunMinutesTotal"]
    summary = REPO / "results" / "synthetic" / total.artifact
    assert float(total.value) == wall_times(summary)["total"]


def test_a_wrong_number_is_caught(synthetic_results, tmp_path):
    entries = json.loads(COMMITTED.read_text())
    first = next(iter(entries))
    entries[first]["value"] = "-999.9"
    entries["Bad1"] = dict(entries[first])
    broken = tmp_path / "numbers.json"
    broken.write_text(json.dumps(entries))
    problems = check_numbers("synthetic", broken)
    assert any(p.startswith(f"\\{first}: prints -999.9") for p in problems)
    assert any("not a LaTeX macro name" in p for p in problems)


def test_figures_round_an_ap_as_the_tables_and_the_text_do():
    from ffcore.eval.plots import percent_label
    from ffcore.report.tex import interval_cell

    unrounded = 0.784478                      # what a figure gets from the evaluation
    in_csv = round(100 * unrounded, 2)        # what the table keeps: 78.45
    assert percent_label(unrounded) == interval_cell(in_csv, None, None) == format_number(in_csv, 1) == "78.5"
