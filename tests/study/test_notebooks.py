"""The study notebooks are thin and runnable anywhere: a literal-only parameters cell with smoke
defaults, then cells that call ffcore.study functions that exist; checked outputs only where
they are deterministic. Plus the pieces of the study layer that need no training."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
# Study functions whose output depends on training, timing or the machine: never checked by nbval.
NONDETERMINISTIC = {"train_or_load", "distill_or_load", "evaluate_runs", "ablation_table", "benchmark_table",
                    "summary_table", "open_study", "measured_benchmark", "seed_runs_table", "v2_variants_table", "pruned_table",
                    "distillation_comparison", "real_photo_check", "what_this_shows", "v2_v1_comparison",
                    "gate_health_table"}


def code_cells(path: Path) -> list[dict]:
    """The notebook's own code cells (papermill's injected parameters cell of a committed run left out)."""
    return [c for c in json.loads(path.read_text())["cells"]
            if c["cell_type"] == "code" and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def study_calls(text: str) -> set[str]:
    return {node.func.attr for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "study"}


def test_there_are_five_notebooks():
    assert [p.stem for p in NOTEBOOKS] == ["01_baseline", "02_v2_architecture", "03_distillation",
                                           "04_ablations", "05_benchmarks"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_is_first_literal_only_and_smoke(path):
    from ffcore.runs.profiles import SMOKE

    cells = code_cells(path)
    assert "parameters" in cells[0].get("metadata", {}).get("tags", []), "first code cell must be tagged"
    tree = ast.parse(source(cells[0]))
    values = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name), ast.dump(node)
        values[node.targets[0].id] = ast.literal_eval(node.value)   # raises on anything but a literal
    assert values["profile"] == "smoke" and values["device"] == SMOKE.device
    assert values["data_root"] is None and values["force"] is False
    assert values["epochs"] is None and values["image_size"] is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_cells_call_existing_study_functions_and_stay_thin(path):
    from ffcore import study

    for cell in code_cells(path)[1:]:
        text = source(cell)
        calls = study_calls(text)
        assert calls, f"{path.name}: a cell that calls no ffcore.study function:\n{text}"
        for name in calls:
            assert callable(getattr(study, name, None)), f"{path.name}: study.{name} does not exist"
        statements = [n for n in ast.parse(text).body if not isinstance(n, (ast.Import, ast.ImportFrom))]
        assert len(statements) <= 2, f"{path.name}: cell has logic, move it into ffcore.study:\n{text}"
        for line in text.splitlines():
            assert not line.rstrip().endswith(";"), f"{path.name}: end plotting lines with `_ = ...`: {line}"
        assert "os.chdir" not in text and "../" not in text, f"{path.name}: resolve paths via ffcore.paths"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_only_deterministic_cells_are_checked(path):
    checked = [c for c in code_cells(path) if CHECK_MARK in source(c)]
    if path.stem != "03_distillation":   # 03 is all training and evaluation
        assert checked, f"{path.name}: no deterministic cell is checked by nbval"
    for cell in checked:
        assert not study_calls(source(cell)) & NONDETERMINISTIC, source(cell)
        for output in cell.get("outputs", []):
            text = json.dumps(output)
            assert str(REPO) not in text, "checked output contains a path"


def test_notebooks_are_committed_with_the_outputs_of_a_complete_run():
    """The committed notebooks hold a whole run (the synthetic reference run): every cell has output,
    none an error, and papermill's injected cell (if any) names a known profile."""
    from ffcore.runs.profiles import PROFILES

    for path in NOTEBOOKS:
        notebook = json.loads(path.read_text())
        for cell in notebook["cells"]:
            if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
                values = {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(source(cell)).body}
                assert values["profile"] in PROFILES, path.name
        for cell in code_cells(path)[1:]:
            if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
                continue
            outputs = cell.get("outputs", [])
            assert outputs, (f"{path.name}: cell without output; rerun `python run_all.py --profile synthetic "
                             f"--in-place`:\n{source(cell)}")
            for output in outputs:
                assert output.get("output_type") != "error", f"{path.name}: committed with an error output"


def test_every_table_and_figure_is_introduced_and_data_cells_are_explained():
    """A markdown sentence before each table or figure; every AP table or comparison is followed by a
    generated "what this shows" paragraph (a study.describe_* or study.what_this_shows call)."""
    explained = ("evaluate_runs", "ablation_table", "v2_variants_table", "pruned_table", "distillation_comparison",
                 "real_photo_check", "v2_v1_comparison", "gate_health_table")
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        for index, cell in enumerate(cells):
            if cell["cell_type"] != "code" or index < 3:
                continue
            calls = study_calls(source(cell))
            if calls & {"what_this_shows"} or any(c.startswith("describe_") for c in calls):
                continue
            previous = [c for c in cells[:index] if c["cell_type"] == "markdown" or study_calls(source(c))]
            assert previous, path.name
            if calls & set(explained):
                following = study_calls(source(cells[index + 1])) if index + 1 < len(cells) else set()
                assert any(c.startswith("describe_") for c in following), f"{path.name}: {calls} not explained"


def test_profiles_and_overrides():
    from ffcore.runs.profiles import PROFILES, get_profile

    assert set(PROFILES) == {"smoke", "synthetic", "synthetic_long", "synthetic_seeds", "full"}
    assert get_profile("smoke").is_synthetic and not get_profile("full").is_synthetic
    smoke = get_profile("smoke").with_overrides(epochs=5, image_size=96)
    assert (smoke.epochs, smoke.student_epochs, smoke.image_size) == (5, 5, 96)
    assert get_profile("smoke").with_overrides() is get_profile("smoke")
    with pytest.raises(KeyError, match="smoke, synthetic, synthetic_long, synthetic_seeds, full"):
        get_profile("huge")
    from ffcore.engine.config import TRAINING_PRESETS

    for profile in PROFILES.values():
        assert profile.train_preset in TRAINING_PRESETS and profile.student_preset in TRAINING_PRESETS, profile.name
        # the budget curve's profile trains each length once (its tables say "one seed: not established");
        # every other profile compares V2 alone and distilled over seeds
        assert len(profile.seeds) >= 2 or profile.budget_epochs, profile.name
        assert profile.bootstrap_resamples >= 100, profile.name
    # the sides of each comparison share one recipe: the synthetic run trains everything alike
    synthetic = get_profile("synthetic")
    assert synthetic.train_preset == synthetic.student_preset and synthetic.epochs == synthetic.student_epochs
    assert len(synthetic.seeds) >= 3 and synthetic.bootstrap_resamples == 1000
    assert get_profile("smoke").with_overrides(fields={"seeds": [0]}).seeds == (0,)
    with pytest.raises(KeyError, match="unknown profile field"):
        get_profile("smoke").with_overrides(fields={"sedes": (0,)})


def test_claims_are_found_in_the_seed_documents():
    from ffcore.paths import shared_dir
    from ffcore.study.claims import SEED_CLAIMS, locate, parse_count

    assert parse_count("487,103") == 487103 and parse_count("~490K") == 490000 and parse_count("0.49M") == 490000
    seeds = shared_dir() / "seeds"
    if not seeds.is_dir():
        pytest.skip("shared seed documents not present")
    for claim in SEED_CLAIMS:
        assert locate(claim, seeds) is not None, f"{claim.quote!r} not found in {claim.source}"


def test_summary_lists_every_artifact_with_its_headline(tmp_path, monkeypatch):
    import pandas as pd

    import ffcore.report.summary as summary
    from ffcore.report.provenance import Provenance, write_table

    monkeypatch.setattr(summary, "results_dir", lambda: tmp_path / "results")
    monkeypatch.setattr(summary, "figures_dir", lambda: tmp_path / "figs")
    monkeypatch.setattr(summary, "REPO_ROOT", tmp_path)
    table = pd.DataFrame({"model": ["a"], "params": [3]})
    write_table(table, tmp_path / "results" / "smoke" / "tables", "params_a", Provenance("smoke", "synthetic"),
                headline="a has 3 parameters")
    path = summary.write_summary("smoke")
    text = path.read_text()
    assert "params_a" in text and "a has 3 parameters" in text and "SYNTHETIC DATA" in text
    assert "results/smoke/tables/params_a.csv" in text


def test_notebook_tables_show_every_column_and_their_caption():
    import pandas as pd

    from ffcore.report.display import CAPTION, captioned_html, configure_display

    configure_display()
    wide = pd.DataFrame([{f"column {i}": i for i in range(40)} | {"AP hard %": 57.3, "hard CI high": 64.3}])
    assert "..." not in wide.to_string() and "hard CI high" in wide._repr_html_()
    wide.attrs[CAPTION] = "AP on the test split <synthetic> & more"
    shown = captioned_html(wide)
    assert shown.startswith("<p") and "AP on the test split &lt;synthetic&gt; &amp; more" in shown
    assert shown.endswith(wide._repr_html_())
    wide.attrs.pop(CAPTION)
    assert captioned_html(wide) == wide._repr_html_()


def test_a_saved_table_carries_its_caption(tmp_path, monkeypatch):
    monkeypatch.setenv("FFCORE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("FFCORE_FIGURES", str(tmp_path / "figures"))
    from ffcore.runs.context import open_study
    from ffcore.report.display import CAPTION

    from ffcore.study.architecture import parameter_table

    table = parameter_table(open_study("smoke", prepare_data=False), "featherface_v1")
    assert table.attrs[CAPTION] == "Parameters of featherface_v1 per part: true count and thop's count"
