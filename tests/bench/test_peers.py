"""Peers side by side: the peers' own environment, benchmarks/bench_peers.py and the notebook-05 functions."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ffcore.paths import shared_dir
from ffcore.bench.peers import PEER_FACTORIES, load_peers
from ffcore.study import peer_detectors as peer_study

REPO = Path(__file__).resolve().parents[2]
PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"


def _bench_peers():
    spec = importlib.util.spec_from_file_location("bench_peers", REPO / "benchmarks" / "bench_peers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module     # dataclasses look their module up while the script loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def study(tmp_path, monkeypatch):
    from ffcore.runs.profiles import get_profile
    from ffcore.runs.context import Study

    monkeypatch.setenv("FFCORE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("FFCORE_FIGURES", str(tmp_path / "figures"))
    return Study(profile=get_profile("smoke"), data_root=tmp_path, device="cpu")


@pytest.fixture(scope="module")
def bench_csv(tmp_path_factory):
    """Our trained RetinaFace timed by the peers' benchmark in this (main) environment, where no peer starts."""
    out = tmp_path_factory.mktemp("peers") / "peer_benchmark.csv"
    code = _bench_peers().main(["--models", "retinaface_mnet025", "--sizes", "96", "160", "--repeats", "3",
                                "--warmup", "0", "--threads", "1", "--out", str(out),
                                "--images", str(shared_dir() / "images" / "crowd.jpg")])
    assert code == 0
    return out


def test_the_main_environment_names_the_peers_environment_for_every_peer():
    peers, skipped = load_peers()
    if peers:
        pytest.skip("peer libraries are installed in this environment")
    assert set(skipped) == set(PEER_FACTORIES)
    assert all("make peers" in reason for reason in skipped.values()), skipped


def test_an_unknown_peer_is_refused_by_name():
    with pytest.raises(KeyError, match="no_such_peer"):
        load_peers(["no_such_peer"])


def test_missing_csv_says_how_to_create_it(tmp_path):
    with pytest.raises(peer_study.PeerBenchmarkMissingError, match=r"make peers && .*bench_peers\.py"):
        peer_study.load_peer_benchmark(tmp_path / "absent.csv")


def test_a_csv_without_the_benchmark_columns_is_refused(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("detector,median_ms\nmtcnn,3\n")
    with pytest.raises(ValueError, match=r"other\.csv: columns .*run_id"):
        peer_study.load_peer_benchmark(path)


def test_benchmark_rows_hold_the_distribution_counts_and_boxes_in_photo_pixels(bench_csv):
    table = peer_study.load_peer_benchmark(bench_csv)
    assert sorted(table["size"]) == ["160", "96"]
    assert set(table["detector"]) == {"retinaface_mnet025"}
    assert (table["weights"] == "retinaface_mnet025_widerface.pth").all()
    for row in table.itertuples():
        samples = json.loads(row.samples_ms)
        assert len(samples) == row.repeats == 3
        assert row.min_ms <= row.p10_ms <= row.median_ms <= row.p90_ms <= row.max_ms
        boxes = json.loads(row.boxes)
        assert len(boxes) == row.detections
        assert max(row.height, row.width) == int(row.size)
        # boxes were found on the resized photo and scaled back to the 1024x624 original
        for x1, y1, x2, y2, score in boxes:
            assert -5 <= x1 < x2 <= 1024 + 5 and -5 <= y1 < y2 <= 624 + 5 and score >= 0.5


def test_summary_pools_launches(bench_csv):
    table = peer_study.load_peer_benchmark(bench_csv)
    second = table.assign(run_id="later", median_ms=table["median_ms"] * 3)
    summary = peer_study.peer_latency_summary(pd.concat([table, second]))
    assert (summary["launches"] == 2).all()
    assert (summary["samples"] == 6).all()
    first = summary.set_index("size").loc["96"]
    low = table.set_index("size").loc["96", "median_ms"]
    assert first["launch_min_ms"] == pytest.approx(low) and first["launch_max_ms"] == pytest.approx(3 * low)


def test_study_functions_write_the_table_and_figures(bench_csv, study):
    table = peer_study.peer_latency_table(study, bench_csv)
    assert list(table["detector"]) == ["retinaface_mnet025", "retinaface_mnet025"]
    assert (study.tables_dir / "peer_latency.csv").is_file()
    figure = peer_study.peer_latency_figure(study, size="96", path=bench_csv)
    assert (study.figures_dir / "peer_latency.png").is_file()
    # the diamonds are the table's medians (median of the launches' medians), not a launch's own
    shown = sorted(figure.axes[0].collections[0].get_offsets()[:, 0])
    expected = table[(table["size"] == "96") & (table["image"] == "crowd.jpg")]["median_ms"]
    assert shown == pytest.approx(sorted(expected), abs=0.01)   # the table is rounded to 0.01 ms
    peer_study.peer_detections_figure(study, image="crowd.jpg", size="160", path=bench_csv)
    sidecar = json.loads((study.figures_dir / "peer_detections_crowd_160.json").read_text())
    assert "retinaface_mnet025" in sidecar["headline"]
    with pytest.raises(ValueError, match="no rows of size '320'"):
        peer_study.peer_latency_figure(study, size="320", path=bench_csv)


@pytest.mark.skipif(not PEERS_PYTHON.is_file(), reason="the peers' environment is not built (make peers)")
def test_every_peer_runs_in_its_environment_and_returns_boxes_in_the_image():
    script = """
import json, sys
import cv2
sys.path.insert(0, sys.argv[1])
from ffcore.bench.peers import load_peers
peers, skipped = load_peers()
image = cv2.resize(cv2.imread(sys.argv[2]), (640, 443))
print(json.dumps({"skipped": skipped, "found": {p.name: p.detect(image).tolist() for p in peers}}))
"""
    result = subprocess.run([str(PEERS_PYTHON), "-c", script, str(REPO),
                             str(shared_dir() / "images" / "group.jpg")],
                            capture_output=True, text=True, timeout=600, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["skipped"] == {}
    assert set(report["found"]) == set(PEER_FACTORIES)
    for name, boxes in report["found"].items():
        for x1, y1, x2, y2, _score in boxes:
            assert 0 <= x1 < x2 <= 641 and 0 <= y1 < y2 <= 444, (name, x1, y1, x2, y2)
    # a group photo: the general-purpose detectors find faces in it
    assert len(report["found"]["mtcnn"]) > 0 and len(report["found"]["haar_cascade"]) > 0
