"""The seed documents' claims: each found at its file and line, read correctly, and shown
beside the figure measured on the model (or part) it is about."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from ffcore.paths import shared_dir
from ffcore.study.claims import QUANTITIES, SEED_CLAIMS, Claim, compare, locate, parse_count, parse_value

SEEDS = shared_dir() / "seeds"
needs_seeds = pytest.mark.skipif(not SEEDS.is_dir(), reason="seed documents absent")


@needs_seeds
def test_every_claim_is_found_where_it_says():
    for claim in SEED_CLAIMS:
        line = locate(claim, SEEDS)
        assert line is not None, (claim.source, claim.quote, claim.context)
        text = (SEEDS / claim.source).read_text(encoding="utf-8").splitlines()[line - 1]
        assert claim.quote in text and claim.context in text


@needs_seeds
def test_each_claim_is_listed_once_and_every_quantity_is_claimed():
    keys = [(c.source, locate(c, SEEDS), c.quote, c.model, c.parts, c.quantity) for c in SEED_CLAIMS]
    assert len(keys) == len(set(keys))
    assert {c.quantity for c in SEED_CLAIMS} == set(QUANTITIES)


def test_figures_are_read_with_their_bounds():
    assert parse_value("487,103") == (487_103, 487_103, False)
    assert parse_value("~490K") == (490_000, 490_000, True)
    assert parse_value("<285K") == (None, 285_000, False)
    assert parse_value("25+") == (25, None, False)
    assert parse_value("3-5ms") == (3, 5, False)
    assert parse_value("~1.2G") == (1.2, 1.2, True)
    assert parse_value("2.37MB") == (2.37, 2.37, False)      # megabytes, not a million
    assert parse_value("0.49M") == (490_000, 490_000, False)
    assert parse_value("0 params") == (0, 0, False)
    assert parse_count("0.2K") == 200
    with pytest.raises(ValueError, match="bound or a range"):
        parse_count("<1K")
    with pytest.raises(ValueError, match="cannot read"):
        parse_value("many")
    with pytest.raises(ValueError, match="unknown quantity"):
        Claim("m", "1", "f.md", "x", quantity="speed")


def test_claims_compared_with_measurements_by_hand():
    assert compare("~285K", 220_562) == "claim +29.2% vs measured"
    assert compare("205K", 254_692) == "claim -19.5% vs measured"
    assert compare("592,371", 592_371) == "matches"
    assert compare("<1K", 40) == "measured inside the claimed bound"
    assert compare("<8ms", 31.0) == "measured OUTSIDE the claimed bound"
    assert compare("25+", 12.0) == "measured OUTSIDE the claimed bound"
    assert compare("0 params", 0) == "matches (0)"


@pytest.fixture()
def study(tmp_path, monkeypatch):
    """A smoke-profile study writing into tmp_path, FLOPs counted at 64 px to stay quick."""
    from ffcore.runs.profiles import get_profile
    from ffcore.study import Study

    monkeypatch.setattr("ffcore.runs.context.results_dir", lambda: tmp_path / "results")
    monkeypatch.setattr("ffcore.runs.context.figures_dir", lambda: tmp_path / "figures")
    profile = dataclasses.replace(get_profile("smoke"), flops_size=64)
    return Study(profile=profile, data_root=tmp_path / "data", device="cpu")


@needs_seeds
def test_claims_table_puts_each_claim_beside_its_measurement(study):
    from ffcore.study.architecture import claims_table

    # latency, memory and INT8 size come from a benchmark table when one is given (notebook 05's)
    benchmark = pd.DataFrame([
        {"model": m, "backend": b, "height": 64, "width": 64, "threads": 2,   # benchmark_table's columns
         "forward_median_ms": ms, "peak_rss_delta_mb": 12.5, "model_file_mb": mb}
        for m, b, ms, mb in (("featherface_v1", "torch", 40.0, 2.4), ("featherface_v2", "torch", 25.0, 1.1),
                             ("featherface_v2", "onnx_int8", 20.0, 0.4))])
    table = claims_table(study, benchmark=benchmark)
    assert len(table) == len(SEED_CLAIMS)
    assert not table["source"].str.contains("not found").any()

    def one(model, quote, source, quantity=QUANTITIES["parameters"], counted=None):
        rows = table[(table.model == model) & (table["claim (quoted)"] == quote)
                     & table.source.str.startswith(source) & (table.quantity == quantity)]
        if counted is not None:
            rows = rows[rows.counted == counted]
        assert len(rows) >= 1, (model, quote, source)
        return rows.iloc[0]

    vit = one("featherface_v2_vit", "~285K", "000_fork_project_overview.md")
    assert vit["measured"] == 220_562 and vit["claim vs measured"] == "claim +29.2% vs measured"
    pruned = one("featherface_v2_pruned20", "205K", "003_v2_technical_report.md")
    assert pruned["measured"] == 254_692 and pruned["claim vs measured"] == "claim -19.5% vs measured"
    # per-part claims count the parts they name: 003's grouped SSH "24K" against V2's context module
    ssh = one("featherface_v2", "24K", "003_v2_technical_report.md", counted="SSH")
    assert ssh["measured"] == 6_192 and ssh["measured thop"] == 6_192
    cbam = one("featherface_v1", "13.5K", "004_v1_v2_architecture_analysis.md", counted="CBAM")
    assert cbam["measured"] == 11_528 + 2_040
    ultra_gate = one("featherface_v2_ultra", "<1K", "001_readme_v1_v2_ultra.md")
    assert ultra_gate["measured"] == 40 and ultra_gate["claim vs measured"] == "measured inside the claimed bound"
    # V1's deformable SSH: thop misses the 103,680 deform_conv2d weights
    dcn = one("featherface_v1", "98,835", "004_v1_v2_architecture_analysis.md", counted="DCN")
    assert dcn["measured"] - dcn["measured thop"] == 103_680
    # sizes, FLOPs, latency and memory
    memory = one("featherface_v1", "2.37MB", "003_v2_technical_report.md", QUANTITIES["weights_mb"])
    from ffcore.models import create_model

    # the FP32 state_dict file: the parameters' and buffers' bytes plus the pickle's own overhead
    tensor_mb = sum(t.numel() * t.element_size() for t in create_model("featherface_v1").state_dict().values()) / 1e6
    assert 592_371 * 4 / 1e6 < tensor_mb <= memory["measured"] < 1.1 * tensor_mb
    flops = one("featherface_v2", "~0.6G", "003_v2_technical_report.md", QUANTITIES["gflops"])
    assert 0 < flops["measured"] < 0.1 and "64x64" in flops["measured how"]
    assert one("featherface_v2", "12ms", "003", QUANTITIES["latency_ms"])["measured"] == 25.0
    fps = one("featherface_v2", "25+", "002", QUANTITIES["fps"])
    assert fps["measured"] == 40.0 and fps["seed's conditions"] == "on entry-level mobile devices"
    assert one("featherface_v2", "0.26MB", "003", QUANTITIES["int8_mb"])["measured"] == 0.4
    assert one("featherface_v1", "<100MB", "000", QUANTITIES["runtime_memory_mb"])["measured"] == 12.5
    # claims about detectors the registry lacks say so
    assert one("MTCNN (not registered)", "1.2M", "003")["claim vs measured"] == "model not registered"
    assert (study.tables_dir / "seed_claims_vs_benchmark.csv").is_file()
    assert not (study.tables_dir / "seed_claims_vs_measured.csv").exists()   # notebook 02's name, not 05's


@needs_seeds
def test_claims_table_without_a_benchmark_times_nothing_and_is_the_same_twice(study, monkeypatch):
    """Notebook 02's table: counts, FLOPs and sizes measured; runtime claims not measured, never timed."""
    from ffcore.study.architecture import claims_table

    def timing(*args, **kwargs):
        raise AssertionError("claims_table timed a model without a benchmark")

    monkeypatch.setattr("ffcore.bench.run_benchmark", timing)
    first = claims_table(study)
    runtime = first[first.quantity.isin([QUANTITIES[q] for q in ("latency_ms", "fps", "runtime_memory_mb")])]
    assert len(runtime) and runtime["measured"].isna().all()
    assert runtime["measured how"].str.startswith("not measured here").all()
    pd.testing.assert_frame_equal(first, claims_table(study))
    assert (study.tables_dir / "seed_claims_vs_measured.csv").is_file()
    assert not (study.tables_dir / "seed_claims_vs_benchmark.csv").exists()


@needs_seeds
def test_claims_table_never_times_again_when_given_the_runs_benchmark(study, monkeypatch):
    """Notebook 05 times each model once: a latency claim at a size its benchmark lacks says so."""
    from ffcore.study.architecture import claims_table

    def second_timing(*args, **kwargs):
        raise AssertionError("claims_table timed a model that the run's benchmark already timed")

    monkeypatch.setattr("ffcore.bench.run_benchmark", second_timing)
    benchmark = pd.DataFrame([{"model": m, "backend": "torch", "height": 32, "width": 32, "threads": 2,
                               "forward_median_ms": 9.0, "peak_rss_delta_mb": 1.0, "model_file_mb": 1.0}
                              for m in ("featherface_v1", "featherface_v2")])
    table = claims_table(study, benchmark=benchmark)
    latency = table[table.quantity == QUANTITIES["latency_ms"]]
    assert len(latency) and latency["measured"].isna().all()
    assert latency["measured how"].str.contains("not measured: this run's benchmark timed no PyTorch").all()
    assert latency["measured how"].str.contains("its sizes: 32x32").all()
