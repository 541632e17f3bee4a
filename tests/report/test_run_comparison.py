"""Two runs' stated verdicts side by side: rows matched by what they compare (seeds stripped), per-seed
rows left out, direction / interval overlap / agreement computed, a git ref read like a folder."""

from __future__ import annotations

import subprocess

import pandas as pd

from ffcore.report.agreement import compare_results, describe_agreement, stated_verdicts, tables_at


def _verdicts(d, low, high, verdict):
    row = {}
    for s in ("easy", "medium", "hard"):
        row.update({f"d{s} AP pts": d, f"d{s} CI low": low, f"d{s} CI high": high, f"{s} verdict": verdict})
    return row


def _csv(table: pd.DataFrame, path) -> None:
    """As `ffcore.report.provenance.write_table` writes it: a provenance line, then the CSV."""
    path.write_text("# SYNTHETIC DATA (not WIDER FACE) | profile test\n" + table.to_csv(index=False))


def _write(folder, offset: int, pooled: tuple, swap: tuple):
    folder.mkdir(parents=True)
    s = f"_seed{offset}" if offset else ""
    seeds = pd.DataFrame([
        {"comparison": "featherface_v2_distilled vs featherface_v2", "run": f"featherface_v2_distilled{s}",
         "vs": f"featherface_v2{s}", "seed": offset, **_verdicts(9.0, 8.0, 10.0, "one seed: not established")},
        {"comparison": "featherface_v2_distilled vs featherface_v2", "run": "pooled", "vs": "", "seed": -1,
         **_verdicts(*pooled)}])
    _csv(seeds, folder / "distillation_comparison.csv")
    ablations = pd.DataFrame([{"model": "featherface_v1" + s, "vs": "", **_verdicts(0.0, None, None, "reference")},
                              {"model": "featherface_v1_ssh_grouped" + s, "vs": "featherface_v1" + s, **_verdicts(*swap)}])
    _csv(ablations, folder / "ablations.csv")
    _csv(pd.DataFrame([{"model": "x", "parameters": 1}]), folder / "params.csv")   # no verdicts


def test_runs_with_disjoint_seeds_line_up_and_disagreements_are_named(tmp_path):
    _write(tmp_path / "a", 0, pooled=(2.0, 0.5, 3.5, "higher"), swap=(-1.0, -2.0, 0.5, "inside the noise"))
    _write(tmp_path / "b", 100, pooled=(1.0, -0.2, 2.0, "inside the noise"), swap=(-0.5, -1.5, 0.8, "inside the noise"))
    assert len(stated_verdicts(tmp_path / "a")) == 6      # pooled + one swap, three settings; per-seed rows left out
    table = compare_results(tmp_path / "a", tmp_path / "b")
    assert set(table["in"]) == {"both"} and len(table) == 6
    pooled = table[table["comparison"] == "pooled: featherface_v2_distilled vs featherface_v2"]
    assert not pooled["agree"].any() and pooled["same direction"].all() and pooled["intervals overlap"].all()
    swap = table[table["comparison"] == "featherface_v1_ssh_grouped vs featherface_v1"]
    assert swap["agree"].all()
    assert table["data dependent"].all()
    assert describe_agreement(table).startswith("3 of 6 data-dependent verdicts agree")


def test_verdicts_fixed_by_the_design_are_not_counted_as_agreement(tmp_path):
    one_seed = "one seed: not established"
    _write(tmp_path / "a", 0, pooled=(2.0, 0.5, 3.5, "higher"), swap=(-1.0, -2.0, 0.5, one_seed))
    _write(tmp_path / "b", 100, pooled=(1.5, 0.2, 2.0, "higher"), swap=(-0.5, -1.5, 0.8, one_seed))
    table = compare_results(tmp_path / "a", tmp_path / "b")
    swap = table[table["comparison"] == "featherface_v1_ssh_grouped vs featherface_v1"]
    assert swap["agree"].all() and not swap["data dependent"].any()
    assert table.loc[table["comparison"].str.startswith("pooled"), "data dependent"].all()
    text = describe_agreement(table)
    assert text.startswith("3 of 3 data-dependent verdicts agree") and "3 more are 'one seed" in text


def test_a_git_ref_is_read_like_a_results_folder(tmp_path):
    repo = tmp_path / "repo"
    tables = repo / "results" / "synthetic" / "tables"
    _write(tables, 0, pooled=(2.0, 0.5, 3.5, "higher"), swap=(-1.0, -2.0, 0.5, "inside the noise"))
    for command in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"]):
        subprocess.run(["git", *command], cwd=repo, check=True)
    folder, holder = tables_at("HEAD", "synthetic", repo)
    assert sorted(p.name for p in folder.glob("*.csv")) == ["ablations.csv", "distillation_comparison.csv", "params.csv"]
    assert compare_results(folder, tables)["agree"].all()
    same, _ = tables_at(str(repo / "results"), "synthetic", repo)
    assert same == tables
