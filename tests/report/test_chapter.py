"""The results chapter (ffcore.report.chapter): sections by question, every artifact placed, \\input-able."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ffcore.report import chapter_sections as sections
from ffcore.report import chapter as thesis
from ffcore.report.tex import escape

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


@pytest.mark.parametrize("profile", ["synthetic", "synthetic_long", "synthetic_seeds"])
def test_every_committed_artifact_has_a_declared_section_and_notebook(profile, monkeypatch):
    monkeypatch.setenv("FFCORE_RESULTS", str(REPO / "results"))
    monkeypatch.setenv("FFCORE_FIGURES", str(REPO / "thesis_figures"))
    placed = {a.name: (a.section, a.notebook) for a in thesis.artifacts(profile)}
    assert placed and set(s for s, _ in placed.values()) <= set(sections.SECTIONS)
    assert placed["v1_ap"] == ("v1", "01_baseline")
    assert placed["distillation_comparison"] == ("distillation", "03_distillation")
    # every figure gets its caption from the map, not from its list of numbers
    for name, (section, _) in placed.items():
        if (REPO / "thesis_figures" / profile / f"{name}.pdf").is_file():
            assert sections.figure_caption(name)


def test_an_unknown_artifact_or_a_sidecar_without_its_notebook_is_an_error(synthetic_copy):
    with pytest.raises(KeyError, match="never_written_by_anyone.*SECTION_OF"):
        sections.place("never_written_by_anyone")
    sidecar = Path(os.environ["FFCORE_RESULTS"]) / "synthetic" / "tables" / "v1_ap.json"
    record = json.loads(sidecar.read_text())
    del record["notebook"]
    sidecar.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"v1_ap\.json names no \"notebook\""):
        thesis.artifacts("synthetic")
    record["notebook"] = "99_nowhere"
    sidecar.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="99_nowhere"):
        thesis.artifacts("synthetic")


def test_chapter_has_a_section_per_question_with_every_table_and_figure(synthetic_copy):
    written = thesis.write_chapter("synthetic", rerender_tables=False)
    body, appendix = written["results"].read_text(), written["appendix"].read_text()
    titles = re.findall(r"\\section\{(.+?)\}\\label", body)
    assert titles == [escape(q.title) for q in sections.QUESTIONS]
    assert "\\documentclass" not in body and "\\appendix" not in body   # no preamble: a thesis \inputs it
    names = {a.name for a in thesis.artifacts("synthetic")}
    for artifact in thesis.artifacts("synthetic"):
        text = appendix if artifact.section in {s.key for s in sections.APPENDICES} else body
        if artifact.name.startswith("training_"):
            continue      # one table of every run instead
        mark = f"tables/{artifact.name}}}" if artifact.kind == "table" else f"FFChapterDir {artifact.name}}}"
        if sections.SUPERSEDED_BY.get(artifact.name) in names:
            assert mark not in text, f"{artifact.name} is printed beside {sections.SUPERSEDED_BY[artifact.name]}"
            continue
        rows = len(pd.read_csv(artifact.path, comment="#")) if artifact.kind == "table" else 0
        if text is appendix and rows > sections.PRINTED_ROWS and artifact.section not in sections.ALWAYS_PRINTED:
            # too long to print: named with its file and rows instead
            assert f"{escape(artifact.name + '.csv')}}}}} {rows} rows" in text and mark not in text, artifact.name
            continue
        if artifact.section in sections.ALWAYS_PRINTED and artifact.kind == "table":
            # every claim once, the lines that quote it gathered (the file keeps one row per quotation)
            assert f"FFChapterDir {artifact.name}_by_claim}}" in text, artifact.name
            continue
        assert mark in text, artifact.name
    training = (synthetic_copy / "training_runs.tex").read_text()
    runs = [p.stem.removeprefix("training_") for p in (Path(os.environ["FFCORE_RESULTS"]) / "synthetic" / "tables")
            .glob("training_*.csv")]
    assert "FFChapterDir training_runs}" in appendix and training.count("\\\\\n") >= len(runs)
    figure_captions = re.findall(r"\\caption\{(.+?)\}\n\\label\{fig:", body)
    # one or two sentences, not every row
    assert figure_captions and all(c.count(";") == 0 and c.count(". ") <= 2 for c in figure_captions)
    assert all(any(s in c for s in ("SYNTHETIC", "WIDER FACE", "REAL PHOTOS", "no data")) for c in figure_captions)
    # the duration is the run from empty caches, not the notebooks' last pass
    assert "\\RunMinutesFromEmptyCaches~minutes" in body and "summary.md" not in body
    assert "\\VOneApFeatherfaceVOneApHard" in body and "\\input{\\FFChapterDir headline}" in body
    headline = (synthetic_copy / "headline.tex").read_text()   # the summary: APs, then every verdict row
    assert "\\label{tab:headline}" in headline and "\\VOneApFeatherfaceVOneApHard{} [" in headline
    assert "\\VTwoVsVOnePooledDhardApPts{}" in headline and "one seed" in headline
    commits = {json.loads(p.read_text())["git"]["commit"][:12]
               for p in (REPO / "results" / "synthetic" / "tables").glob("*.json")}
    assert "\\section{Provenance}" in appendix and any(commit in appendix for commit in commits)
    chapter = written["chapter"].read_text()
    assert "\\input{\\FFChapterDir preamble}" in chapter and "\\input{\\FFChapterDir numbers}" in chapter
    assert "booktabs" in written["preamble"].read_text() and "longtable" in written["preamble"].read_text()


def test_an_opening_paragraph_states_established_verdicts_with_macros_and_names_the_rest(monkeypatch):
    monkeypatch.setenv("FFCORE_RESULTS", str(REPO / "results"))
    table = pd.DataFrame({"model": ["base", "swap_a", "swap_b"], "vs": [None, "base", "base"],
                          "dhard AP pts": [0.0, -2.8, 0.3], "dhard CI low": [None, -5.1, -1.0],
                          "dhard CI high": [None, -0.4, 1.5], "hard verdict": ["reference", "lower", "inside the noise"]})
    rows = sections.comparison_rows("ablations", table, "model")
    assert [r.row for r in rows] == ["swap_a", "swap_b"]
    macro = lambda t, r, c: f"\\M{r[-1].upper()}{c.split()[-1].title() if 'CI' in c else 'D'}{{}}"
    text = " ".join(sections.verdict_sentences(rows, {"ablations": table}, macro))
    assert "\\texttt{swap\\_\\allowbreak{}a} vs base is lower" in text and "is lower on hard (\\MAD{} AP points" in text
    assert "[\\MALow{}, \\MAHigh{}]" in text
    assert "Not established (the interval contains zero): \\texttt{swap\\_\\allowbreak{}b} vs" in text
    assert not re.search(r"\d", text.replace("95\\%", ""))   # no number typed in: only macros


def test_a_seed_comparison_states_only_its_pooled_row():
    table = pd.DataFrame({"comparison": ["a vs b"] * 3, "run": ["a", "a_seed1", "pooled"],
                          "hard verdict": ["one seed: not established"] * 2 + ["lower"]})
    assert [r.row for r in sections.comparison_rows("v2_vs_v1", table, "run")] == ["pooled"]


def test_a_claim_quoted_on_several_lines_is_one_row_with_every_line():
    assert thesis._sources_text(["a.md:3", "a.md:23", "b.md:9", "c.md"]) == "a.md:3, 23; b.md:9; c.md"


def test_the_swaps_open_with_what_the_placebo_check_found():
    failed = pd.DataFrame({"setting": ["easy", "medium", "hard"], "seeds": ["1 vs 1"] * 3,
                           "passes": [False, True, False]})
    text = sections.placebo_sentence(failed)
    assert "(1 vs 1 seeds): its interval contains zero in 1 of the 3 settings" in text and "is noise" in text
    held = sections.placebo_sentence(failed.assign(passes=True))
    assert "in 3 of the 3 settings" in held and "noise" not in held


def test_the_chapter_counts_its_interval_verdicts_against_what_chance_alone_would_establish():
    rows = [sections.Verdict("t", "a", "a vs b", {"easy": "higher", "medium": "inside the noise", "hard": "lower"}),
            sections.Verdict("t", "c", "c vs b", {s: "one seed: not established" for s in sections.SETTINGS}),
            sections.Verdict("t", "d", "d vs b", {s: "inside the noise" for s in sections.SETTINGS})]
    text = sections.multiplicity_sentence(rows)
    # six interval verdicts (the one-seed row states none), two exclude zero, 6 x 0.05 by chance
    assert text.startswith("Over the whole chapter, 6 verdicts rest on a 95\\% interval")
    assert "2 of them exclude zero, where about 0.3 would by chance alone" in text
    assert sections.multiplicity_sentence(rows[1:2]) == ""


@pytest.mark.skipif(shutil.which("latexmk") is None, reason="latexmk is not installed (TeX Live builds the thesis)")
def test_a_thesis_in_another_folder_inputs_the_chapter(synthetic_copy, tmp_path):
    import subprocess

    thesis.write_chapter("synthetic", rerender_tables=False)
    book = tmp_path / "elsewhere" / "thesis"
    book.mkdir(parents=True)
    chapter_dir = os.path.relpath(synthetic_copy, book).replace(os.sep, "/") + "/"
    (book / "main.tex").write_text("\n".join([
        r"\documentclass[11pt,a4paper]{report}", r"\usepackage[margin=2.5cm]{geometry}",
        f"\\newcommand{{\\FFChapterDir}}{{{chapter_dir}}}",
        r"\input{\FFChapterDir preamble}", r"\input{\FFChapterDir numbers}", r"\begin{document}",
        r"\chapter{Introduction}", r"See chapter~\ref{chap:results-synthetic}.",
        r"\input{\FFChapterDir results}", r"\appendix", r"\input{\FFChapterDir appendix}", r"\end{document}", ""]))
    result = subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "main.tex"],
                            cwd=book, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:]
    log = (book / "main.log").read_text(errors="replace")
    assert "Output written on main.pdf" in log and "undefined" not in log.split("Output written")[-1]


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


def test_tall_figures_share_one_float_side_by_side_and_wide_ones_keep_their_own(tmp_path):
    from PIL import Image

    def figure(name, size):
        Image.new("RGB", size).save(tmp_path / f"{name}.png")
        return thesis.Artifact("figure", name, {}, tmp_path / f"{name}.pdf", tmp_path / f"{name}.json")

    tall, wide = figure("attention_maps_featherface_v1", (100, 130)), figure("latency", (130, 100))
    assert thesis.is_tall(tall) and not thesis.is_tall(wide)
    lines = "\n".join(thesis.side_by_side_block([tall, tall], tmp_path))
    assert lines.count(r"\begin{minipage}") == 2 and lines.count(r"\begin{figure}") == 1
    assert lines.count(r"\label{fig:attention_maps_featherface_v1}") == 2
