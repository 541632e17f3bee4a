"""Tables as LaTeX (ffcore.report.tex, ffcore.report.provenance.write_table): what the .tex prints, and that it compiles."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from ffcore.report.provenance import Provenance, render_table_file, write_table
from ffcore.report.tex import PREAMBLE_PACKAGES, TexLayout, column_label, escape, interval_cell, render_table, split_caption

REPO = Path(__file__).resolve().parents[2]
SYNTHETIC_TABLES = REPO / "results" / "synthetic" / "tables"
HAS_TEX = shutil.which("pdflatex") is not None


def compile_latex(body: str, folder: Path) -> subprocess.CompletedProcess:
    document = "\n".join([r"\documentclass{article}", *PREAMBLE_PACKAGES, r"\begin{document}", body, r"\end{document}"])
    (folder / "doc.tex").write_text(document)
    return subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=folder,
                          capture_output=True, text=True, timeout=120)


def ap_table(rows: int = 3) -> pd.DataFrame:
    return pd.DataFrame({
        "run": [f"model_{i}" for i in range(rows)],
        "AP easy %": [94.34 - i for i in range(rows)], "easy CI low": [90.64] * rows, "easy CI high": [97.02] * rows,
        "AP hard %": [54.94, float("nan"), *[50.0] * (rows - 2)], "hard CI low": [47.26] * rows,
        "hard CI high": [63.06] * rows, "seed": [0, -1, *range(rows - 2)],
        "status": ["loaded (checkpoint exists)"] * rows, "note": [f"<50% & #{i} {{x}} ~y^z $ \\ >" for i in range(rows)],
        "checkpoint": ["33ec66fdcf5d"] * rows})


def test_escape_makes_every_special_character_literal():
    assert escape("95% CI of run_1 & #2 {a} ~ ^ $ \\ < >") == (
        r"95\% CI of run\_\allowbreak{}1 \& \#2 \{a\} \textasciitilde{} \textasciicircum{} \$ \textbackslash{} "
        r"\textless{} \textgreater{}")
    # identifiers may break after "_", and after an inner "." or "/"; numbers never
    assert escape("neck.levels.0 of fokouarnaud/FeatherFace at 0.5") == (
        r"neck.\allowbreak{}levels.0 of fokouarnaud/\allowbreak{}FeatherFace at 0.5")


def test_interval_in_one_cell_and_missing_values():
    assert interval_cell(94.34, 90.64, 97.02) == "94.3 [90.6, 97.0]"
    assert interval_cell(94.34, float("nan"), float("nan")) == "94.3"
    assert interval_cell(float("nan"), 1.0, 2.0) == "--"


def test_human_column_names():
    assert column_label("deasy AP pts") == "Δ easy (AP pts)"
    assert column_label("GFLOPs_640") == "GFLOPs at 640"
    assert column_label("thop_parameters") == "parameters (thop)"
    assert column_label("forward_median_ms") == "forward median ms"


def test_printed_columns_merge_intervals_drop_provenance_and_name_what_the_csv_keeps():
    tex = render_table(*_rows(ap_table()), "t", "caption with 95% and x_y")
    assert "94.3 [90.6, 97.0]" in tex and "CI low" not in tex.split("\\midrule")[0]
    assert "loaded (checkpoint exists)" not in tex and "33ec66fdcf5d" not in tex
    assert "In the CSV only: status, checkpoint" in tex
    assert not re.search(r"\bnan\b", tex, re.I) and "& --" in tex    # the missing hard AP
    assert " -1 " not in tex                                   # the sentinel seed prints empty
    assert r"95\% and x\_" in tex and r"\begin{table}" in tex and r"\toprule" in tex and r"\centering" in tex


def test_constant_column_moves_to_caption_and_caller_choice_wins():
    table = ap_table()
    table["val images"] = 100
    tex = render_table(*_rows(table), "t", "c")
    assert "Every row: val images 100." in tex
    chosen = render_table(*_rows(table), "t", "c", TexLayout(columns=("run", "AP hard %")))
    assert chosen.split("\\midrule")[0].count("&") == 1 and "val images" in chosen   # named as CSV-only
    with pytest.raises(KeyError, match="not in the table"):
        render_table(*_rows(table), "t", "c", TexLayout(columns=("run", "AP nowhere")))


def test_long_tables_break_across_pages():
    tex = render_table(*_rows(ap_table(45)), "t", "c")
    assert r"\begin{longtable}" in tex or r"\begin{xltabular}" in tex
    assert r"\endhead" in tex and r"\begin{table}" not in tex


def test_width_cap_keeps_the_differences_and_prints_the_three_aps_or_none():
    columns = ["model", "vs", "seeds", "parameters", "GFLOPs_640", "AP easy %", "AP medium %", "AP hard %",
               "deasy AP pts", "dmedium AP pts", "dhard AP pts", "last"]
    rows = [{c: f"{c}{i}" for c in columns} for i in range(2)]
    printed, left_out, _ = TexLayout(max_columns=10).printed(columns, rows)
    assert [p.sources[0] for p in printed] == ["model", "vs", "seeds", "parameters", "GFLOPs_640",
                                               "deasy AP pts", "dmedium AP pts", "dhard AP pts"]
    assert left_out == ["AP easy %", "AP medium %", "AP hard %", "last"]


def test_a_verdict_prints_under_its_difference_and_a_repeated_column_prints_once():
    columns = ["model", "run", "dhard AP pts", "dhard CI low", "dhard CI high", "hard verdict"]
    rows = [{"model": "a", "run": "a", "dhard AP pts": -2.8, "dhard CI low": -5.1, "dhard CI high": -0.4,
             "hard verdict": "lower"}, {"model": "b", "run": "b", "dhard AP pts": 0.3, "dhard CI low": -1.0,
                                        "dhard CI high": 1.5, "hard verdict": "inside the noise"}]
    printed, left_out, _ = TexLayout().printed(columns, rows)
    assert [(p.sources, p.verdict) for p in printed] == [
        (("model",), None), (("dhard AP pts", "dhard CI low", "dhard CI high"), "hard verdict")]
    assert left_out == ["run"]
    tex = render_table(rows, columns, "t", "c")
    assert r"-2.8 [-5.1, -0.4]\\ {}\emph{lower}" in tex and r"\emph{noise}" in tex and "noise: the interval contains zero" in tex
    assert "{lr}" in tex      # the column stays a right-aligned number column


def _rows(table: pd.DataFrame):
    from ffcore.report.tex import frame_rows

    return frame_rows(table)


def test_write_table_keeps_caption_and_layout_so_rendering_again_gives_the_same_tex(tmp_path):
    provenance = Provenance(profile="smoke", dataset="synthetic")
    paths = write_table(ap_table(), tmp_path, "ap", provenance, caption="AP, 95% intervals",
                        columns=["run", "AP easy %", "AP hard %", "seed"])
    first = paths["tex"].read_text()
    record = json.loads(paths["json"].read_text())
    assert record["caption"] == "AP, 95% intervals" and record["tex"]["columns"][0] == "run"
    assert "SYNTHETIC DATA" in first and "profile smoke" in first
    assert render_table_file(paths["csv"]).read_text() == first


def test_committed_tables_are_rendered_from_their_csv():
    """results/synthetic/tables/*.tex are what ffcore.report.tex makes of the CSVs (rerun `ffcore thesis` if not)."""
    for csv in sorted(SYNTHETIC_TABLES.glob("*.csv")):
        record = json.loads(csv.with_suffix(".json").read_text())
        assert "caption" in record, f"{csv.with_suffix('.json')}: no caption recorded"
        from ffcore.report.provenance import table_caption
        from ffcore.report.tables import read_table_csv
        from ffcore.report.tex import frame_rows

        expected = render_table(*frame_rows(read_table_csv(csv)), csv.stem,
                                table_caption(record["caption"], Provenance.from_record(record)),
                                TexLayout.from_record(record.get("tex")))
        assert csv.with_suffix(".tex").read_text() == expected, f"{csv.with_suffix('.tex')} is stale"


@pytest.mark.skipif(not HAS_TEX, reason="pdflatex not installed (apt-get install -y texlive-latex-recommended "
                                         "texlive-latex-extra latexmk)")
def test_generated_tables_compile(tmp_path):
    short = render_table(*_rows(ap_table()), "short", "95% bootstrap, run_1 & <x>")
    long = render_table(*_rows(ap_table(45)), "long", "long one")
    worst = SYNTHETIC_TABLES / "seed_claims_vs_measured.tex"
    body = short + long + (f"\\input{{{worst.with_suffix('')}}}" if worst.is_file() else "")
    result = compile_latex(body, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "doc.pdf").is_file()


def test_a_caption_says_what_the_table_is_and_the_method_goes_under_it():
    title, method = split_caption("AP on the test split (seed 7): one row per run; pooled last [SYNTHETIC | profile p]")
    assert title == "AP on the test split [SYNTHETIC | profile p]"
    assert method == "(seed 7) one row per run; pooled last"
    assert split_caption("Model size [no data]") == ("Model size [no data]", "")
    tex = render_table(*_rows(ap_table()), "t", "AP (seed 7): one row per run [S]")
    assert r"\caption{AP [S]}" in tex and r"{\footnotesize\raggedright (seed 7) one row per run" in tex


def test_a_comparison_prints_run_and_vs_rather_than_its_comparison_text_where_they_name_every_row():
    columns = ["comparison", "run", "vs", "dhard AP pts", "hard verdict"]
    rows = [{"comparison": "a vs b", "run": "a", "vs": "b", "dhard AP pts": 1.0, "hard verdict": "inside the noise"},
            {"comparison": "a vs b", "run": "pooled", "vs": None, "dhard AP pts": 2.0, "hard verdict": "lower"},
            {"comparison": "c vs d", "run": "c", "vs": "d", "dhard AP pts": 1.0, "hard verdict": "lower"}]
    printed, left_out, _ = TexLayout().printed(columns, rows)
    assert [p.sources[0] for p in printed] == ["run", "vs", "dhard AP pts"] and left_out == ["comparison"]
    pooled_twice = rows + [{**rows[1], "comparison": "c vs d"}]
    assert TexLayout().printed(columns, pooled_twice)[0][0].sources == ("comparison",)

