"""The results chapter (ffcore.report.chapter): every artifact in its notebook's section, sources named."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from ffcore.report import chapter as thesis

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def synthetic_copy(tmp_path, monkeypatch):
    """The committed synthetic run's tables and figures, copied so writing the chapter touches nothing."""
    results, figures = tmp_path / "results", tmp_path / "figures"
    shutil.copytree(REPO / "results" / "synthetic", results / "synthetic")
    shutil.copytree(REPO / "thesis_figures" / "synthetic", figures / "synthetic",
                    ignore=shutil.ignore_patterns("*.png", "chapter.*", "results.tex", "numbers.*"))
    monkeypatch.setenv("FFCORE_RESULTS", str(results))
    monkeypatch.setenv("FFCORE_FIGURES", str(figures))
    return figures / "synthetic"


def test_every_artifact_of_the_committed_run_is_placed_in_a_notebook(synthetic_copy):
    books = thesis.notebooks()
    windows = thesis.notebook_windows("synthetic")
    assert sorted(windows) == [b.stem for b in books]
    placed = {a.name: thesis.attribute(a, books, windows) for a in thesis.artifacts("synthetic")}
    assert thesis.OTHER not in placed.values(), [n for n, s in placed.items() if s == thesis.OTHER]
    assert placed["v1_ap"] == "01_baseline" and placed["distillation_comparison"] == "03_distillation"
    assert placed["benchmark"] == "05_benchmarks"


def test_a_recorded_notebook_wins_and_a_quoted_name_is_the_last_resort(synthetic_copy):
    books = thesis.notebooks()
    recorded = thesis.Artifact("table", "v1_ap", {"notebook": "04_ablations", "created": ""}, Path("v1_ap.csv"))
    assert thesis.attribute(recorded, books, {}) == "04_ablations"
    quoted = thesis.Artifact("table", "v1_ap", {"created": ""}, Path("v1_ap.csv"))
    assert thesis.attribute(quoted, books, {}) == "01_baseline"
    unknown = thesis.Artifact("figure", "never_written_by_anyone", {"created": ""}, Path("x.pdf"))
    assert thesis.attribute(unknown, books, {}) == thesis.OTHER


def test_chapter_has_a_section_per_notebook_with_every_table_and_figure(synthetic_copy):
    written = thesis.write_chapter("synthetic", rerender_tables=False)
    body = written["results"].read_text()
    sections = re.findall(r"\\section\{(.+?)\}", body)
    assert [s[:2] for s in sections] == ["01", "02", "03", "04", "05"]
    for artifact in thesis.artifacts("synthetic"):
        if artifact.kind == "table":
            assert f"tables/{artifact.name}}}" in body, artifact.name
        else:
            assert f"]{{{artifact.name}}}" in body, artifact.name
    figure_captions = re.findall(r"\\caption\{(.+?)\}\n\\label\{fig:", body)
    assert figure_captions and all("profile synthetic" in c for c in figure_captions)
    assert all(any(s in c for s in ("SYNTHETIC", "WIDER FACE", "REAL PHOTOS", "no data")) for c in figure_captions)
    assert r"\RunMinutesTotal" in body and r"\VOneApFeatherfaceVOneApHard" in body
    # the appendix names the commit the committed run's artifacts were written at (from their sidecars)
    commits = {json.loads(p.read_text())["git"]["commit"][:12]
               for p in (REPO / "results" / "synthetic" / "tables").glob("*.json")}
    assert r"\section*{Provenance}" in body and any(commit in body for commit in commits)
    chapter = written["chapter"].read_text()
    assert r"\input{preamble}" in chapter and r"\input{numbers}" in chapter
    assert "booktabs" in written["preamble"].read_text() and "longtable" in written["preamble"].read_text()


def test_missing_tex_says_what_to_install(synthetic_copy, monkeypatch):
    monkeypatch.setattr(thesis.shutil, "which", lambda name: None)
    with pytest.raises(thesis.ThesisToolsMissing, match=re.escape(thesis.APT_LINE)) as error:
        thesis.build_chapter("synthetic")
    assert "latexmk" in str(error.value) and "pdflatex" in str(error.value)


def test_thesis_command_checks_the_numbers(synthetic_copy, capsys):
    from ffcore.cli import main

    thesis.write_chapter("synthetic", rerender_tables=False)
    assert main(["thesis", "--profile", "synthetic", "--check-numbers"]) == 0
    assert "every number agrees" in capsys.readouterr().out
