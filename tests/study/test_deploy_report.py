"""Notebook 05's deployment tables: read from the benchmark's CSVs, ratios taken launch by launch,
a loaded machine flagged, a missing or foreign file named with the command that writes it."""

from __future__ import annotations

import pandas as pd
import pytest

from ffcore.runs.context import open_study
from ffcore.study.onnx_latency import (DeployBenchmarkMissingError, deploy_dir, deploy_ladder_table, deploy_latency_summary,
                                 deploy_latency_table, describe_deployment, operator_profile_table, read_deploy_csv)


@pytest.fixture()
def study(tmp_path, monkeypatch):
    monkeypatch.setenv("FFCORE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("FFCORE_FIGURES", str(tmp_path / "figures"))
    return open_study("smoke", data_root=tmp_path / "data", prepare_data=False)


def write_bench(folder, retina=(20.0, 30.0), v2=(18.0, 33.0), load=0.1):
    """Two launches at one setting: V2 faster in the first, slower in the second."""
    rows = []
    for launch, (r, v) in enumerate(zip(retina, v2)):
        for graph, ms in (("retinaface_mnet025", r), ("featherface_v2", v), ("featherface_v2_literal", v + 5)):
            rows.append({"launch": launch, "graph": graph, "height": 640, "width": 640, "threads": 1, "rounds": 30,
                         "median_ms": ms, "p10_ms": ms - 1, "p90_ms": ms + 1, "loadavg_before": load,
                         "loadavg_after": load})
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "deploy_latency.csv", index=False)
    pd.DataFrame([{"model": m, "step": s, "nodes": n, "height": 640, "width": 640, "threads": 1, "median_ms": ms,
                   "p10_ms": ms - 1, "p90_ms": ms + 1, "vs_reference": ms / 20.0, "loadavg_before": load}
                  for m, s, n, ms in (("retinaface_mnet025", "literal", 150, 22.0),
                                      ("retinaface_mnet025", "+ fold_batchnorm", 120, 20.0),
                                      ("featherface_v2", "literal", 500, 40.0),
                                      ("featherface_v2", "+ fold_batchnorm", 340, 30.0))]
                 ).to_csv(folder / "deploy_ladder.csv", index=False)
    profile = []
    for model, conv, other in (("retinaface_mnet025", 18.0, 1.0), ("featherface_v2", 15.0, 9.0)):
        profile += [{"model": model, "operator": "Conv", "nodes": 50, "kernel_ms": conv, "share": conv / (conv + other)},
                    {"model": model, "operator": "Mul", "nodes": 30, "kernel_ms": other, "share": other / (conv + other)},
                    {"model": model, "operator": "(between kernels)", "nodes": 80, "kernel_ms": 2.0},
                    {"model": model, "operator": "(wall time per run)", "nodes": 80, "kernel_ms": conv + other + 2.0}]
    profile = pd.DataFrame(profile).assign(height=640, width=640, threads=1, runs=10, loadavg=load)
    profile.to_csv(folder / "operator_profile.csv", index=False)


def test_ratios_are_taken_launch_by_launch(tmp_path):
    write_bench(tmp_path)
    summary = deploy_latency_summary(read_deploy_csv("deploy_latency.csv", tmp_path)).iloc[0]
    assert summary["V2/RetinaFace min"] == pytest.approx(0.9) and summary["V2/RetinaFace max"] == pytest.approx(1.1)
    assert summary["launches V2 not slower"] == 1 and summary["launches"] == 2
    assert summary["RetinaFace ms"] == pytest.approx(25.0) and summary["V2 literal ms"] == pytest.approx(30.5)


def test_tables_and_verdict_come_from_the_files(study, tmp_path):
    write_bench(tmp_path / "deploy")
    deploy_latency_table(study, tmp_path / "deploy")
    assert len(deploy_ladder_table(study, tmp_path / "deploy")) == 4
    profile = operator_profile_table(study, tmp_path / "deploy")
    assert set(profile["operator"]) >= {"Conv", "(between kernels)", "(wall time per run)"}
    text = str(getattr(describe_deployment(study, tmp_path / "deploy"), "data", ""))
    assert "not slower in 1 of 2" in text and "featherface_v2: 80 nodes, wall 26.0 ms" in text
    assert "convolutions 15.0 ms, other kernels 9.0 ms, between kernels 2.0 ms" in text
    sidecar = (study.tables_dir / "deploy_latency.json").read_text()
    assert "no data" in sidecar.lower() or "none" in sidecar.lower()   # timings of random inputs: no data stamp


def test_a_loaded_machine_is_flagged(study, tmp_path):
    write_bench(tmp_path, retina=(20.0, 21.0), v2=(18.0, 19.0), load=3.2)
    text = str(getattr(describe_deployment(study, tmp_path), "data", ""))
    assert "not slower than RetinaFace's in any launch" in text and "other work shared the CPU" in text


def test_missing_or_foreign_files_name_the_command(tmp_path):
    with pytest.raises(DeployBenchmarkMissingError, match="bench_deploy_latency.py"):
        read_deploy_csv("deploy_latency.csv", tmp_path)
    pd.DataFrame([{"launch": 0, "graph": "x"}]).to_csv(tmp_path / "deploy_latency.csv", index=False)
    with pytest.raises(ValueError, match="columns .* are missing"):
        read_deploy_csv("deploy_latency.csv", tmp_path)


def test_the_committed_measurements_are_readable():
    if not (deploy_dir() / "deploy_latency.csv").is_file():
        pytest.skip("no committed deploy benchmark")
    for name in ("deploy_latency.csv", "deploy_ladder.csv", "operator_profile.csv"):
        assert len(read_deploy_csv(name)) > 0
