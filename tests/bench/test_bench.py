"""Latency benchmark: a well-formed table on a tiny matrix, ratios, figure, profile, peers."""

import math

import matplotlib
import pytest
import torch
from torch import nn

from ffcore.anchors import num_priors
from ffcore.bench import BenchConfig, PeakRss, get_bench_config, run_benchmark, speed_ratios, torch_operator_times
from ffcore.bench.peers import load_peers


class TinyDetector(nn.Module):
    """Follows the model contract (three levels, strides 8/16/32, two anchors) at a fraction of the cost."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=8, padding=1)
        self.down = nn.ModuleList([nn.Identity(), nn.Conv2d(8, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 2, 1)])
        self.head = nn.Conv2d(8, 2 * 16, 1)

    def forward(self, x):
        feature, outputs = self.stem(x / 128), []
        for down in self.down:
            feature = down(feature)
            outputs.append(self.head(feature).permute(0, 2, 3, 1).reshape(x.shape[0], -1, 16))
        out = torch.cat(outputs, dim=1)
        return out[..., :4], out[..., 4:6], out[..., 6:]


TINY = BenchConfig(sizes=((64, 64), (48, 64)), batches=(1, 2), threads=(1,), backends=("torch", "onnx_fp32"),
                   repeats=3, warmup=1)


@pytest.fixture(scope="module")
def table():
    torch.manual_seed(0)
    model = TinyDetector().eval()
    assert model(torch.zeros(1, 3, 48, 64))[0].shape[1] == num_priors(48, 64)
    return run_benchmark([("tiny", model), ("tiny_copy", TinyDetector().eval())], TINY)


def test_table_has_one_row_per_model_backend_and_setting(table):
    assert len(table) == 2 * 2 * 2 * 2   # models x backends x sizes x batches (one thread count)
    keys = table[["model", "backend", "height", "width", "batch", "threads"]]
    assert not keys.duplicated().any()
    assert set(table.backend) == {"torch", "onnx_fp32"}
    assert (table.repeats == 3).all()
    for stage in ("forward", "preprocess", "postprocess", "end_to_end"):
        assert (table[f"{stage}_median_ms"] > 0).all(), stage
    assert (table.forward_p10_ms <= table.forward_median_ms).all()
    assert (table.forward_median_ms <= table.forward_p90_ms).all()
    assert (table.forward_iqr_ms >= 0).all()
    # end to end is timed per round, so its median cannot be below the forward median
    assert (table.end_to_end_median_ms >= table.forward_median_ms).all()
    assert (table.per_image_ms * table.batch - table.end_to_end_median_ms).abs().max() < 1e-9
    parameters = sum(p.numel() for p in TinyDetector().parameters())
    assert (table.parameters == parameters).all()
    assert (table.model_file_mb > parameters * 4 / 1e6 * 0.9).all()   # float32 weights at least
    assert table.peak_rss_delta_mb.notna().all()


def test_speed_ratios_and_figure(table):
    ratios = speed_ratios(table, "tiny", backend="torch", size=(64, 64), batch=1, threads=1)
    assert list(ratios.model) == ["tiny", "tiny_copy"]
    assert math.isclose(ratios.speedup_vs_tiny.iloc[0], 1.0)
    with pytest.raises(KeyError, match="reference model"):
        speed_ratios(table, "missing", backend="torch", size=(64, 64), batch=1, threads=1)
    from ffcore.study.bench_figures import draw_latency

    figure = draw_latency(table, size=(64, 64), batch=2, threads=1)
    assert isinstance(figure, matplotlib.figure.Figure)
    assert len(figure.axes[0].patches) == 4   # 2 models x 2 backends
    # one colour per model: "tiny" and "tiny_copy" are unknown to the fixed palette yet never share one
    assert len({patch.get_facecolor() for patch in figure.axes[0].patches}) == 2
    matplotlib.pyplot.close(figure)


def test_torch_operator_times_lists_the_convolutions():
    times = torch_operator_times(TinyDetector(), size=64, repeats=1)
    assert {"operator", "calls", "self_cpu_ms", "share"} <= set(times.columns)
    assert (times.self_cpu_ms.diff().dropna() <= 0).all()        # sorted, largest first
    assert 0 < times.share.sum() <= 1 + 1e-9
    conv_rows = times[times.operator.str.contains("conv")]
    assert not conv_rows.empty


def test_config_validation_and_named_settings():
    with pytest.raises(ValueError, match="unknown backends"):
        BenchConfig(backends=("tensorrt",))
    smoke = get_bench_config("smoke")
    assert smoke.sizes == ((640, 640),) and smoke.batches == (1,) and smoke.threads == (2,)
    assert get_bench_config("full").sizes == ((640, 640), (480, 640))
    with pytest.raises(KeyError, match="unknown benchmark setting"):
        get_bench_config("huge")


def test_peak_rss_sees_native_allocations():
    with PeakRss() as rss:
        block = torch.ones(64, 2 ** 20 // 4 * 4)   # 64 MiB touched outside the Python heap
        del block
    assert rss.peak_delta > 32 * 2 ** 20


def _fake_peers(monkeypatch, calls):
    """Peer factories that start, lack their library, lack their files or refuse this machine."""
    import numpy as np

    from ffcore.bench import peers as peers_module

    def starts():
        def detect(image):
            calls.append(image.shape)
            return np.zeros((0, 5), np.float32)

        return peers_module.Peer("starts", detect, "numpy", file_bytes=123, note="fake")

    def not_installed():
        raise ModuleNotFoundError("No module named 'facelib'", name="facelib")

    def no_files():
        raise FileNotFoundError("cascade.xml")

    def refuses():
        raise RuntimeError("no cascade files in this OpenCV")

    monkeypatch.setattr(peers_module, "PEER_FACTORIES", {"starts": starts, "not_installed": not_installed,
                                                         "no_files": no_files, "refuses": refuses})


def test_peers_that_cannot_start_are_skipped_with_their_reason_and_the_others_timed(monkeypatch):
    calls = []
    _fake_peers(monkeypatch, calls)
    config = BenchConfig(sizes=((48, 64),), batches=(1, 2), threads=(1,), backends=("torch",), repeats=2, warmup=1)
    table = run_benchmark([("tiny", TinyDetector().eval())], config, peers=True)
    skipped = table.attrs["skipped_peers"]
    assert set(skipped) == {"not_installed", "no_files", "refuses"}
    assert skipped["not_installed"].startswith("not installed (facelib); run `make peers`")
    assert skipped["no_files"] == "FileNotFoundError: cascade.xml"
    assert skipped["refuses"] == "RuntimeError: no cascade files in this OpenCV"
    peer_rows = table[table.model == "starts"]
    assert list(peer_rows.batch) == [1]                       # peers run at batch 1 only
    assert peer_rows.backend.iloc[0] == "numpy" and peer_rows.note.iloc[0] == "fake"
    assert math.isnan(peer_rows.preprocess_median_ms.iloc[0])  # the peer's own pipeline is one timing
    assert calls and set(calls) == {(48, 64, 3)}               # the photo resized to the setting
    assert sorted(table[table.model == "tiny"].batch) == [1, 2]


def test_a_peer_that_fails_otherwise_is_a_bug_and_propagates(monkeypatch):
    from ffcore.bench import peers as peers_module

    def broken():
        raise ValueError("bad threshold")

    monkeypatch.setattr(peers_module, "PEER_FACTORIES", {"broken": broken})
    with pytest.raises(ValueError, match="bad threshold"):
        load_peers()


def test_bench_cli_smoke(tmp_path, capsys):
    from ffcore.cli import main

    out = tmp_path / "bench.csv"
    assert main(["bench", "--models", "retinaface_mnet025", "featherface_v2", "--setting", "smoke",
                 "--backends", "torch", "--sizes", "64", "--repeats", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "speedup_vs_retinaface_mnet025" in printed
    import pandas as pd

    written = pd.read_csv(out)
    assert set(written.model) == {"retinaface_mnet025", "featherface_v2"}


# --------------------------------------------------------------------------------------------
# ONNX Runtime graphs side by side
# --------------------------------------------------------------------------------------------

def _tiny_onnx(path, convolutions: int):
    """image [N, 3, H, W] -> `convolutions` 3x3 convs with ReLU: a graph whose cost grows with the count."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, name = [], [], "image"
    for i in range(convolutions):
        weight = numpy_helper.from_array(np.full((3, 3, 3, 3), 0.01, dtype=np.float32), f"w{i}")
        inits.append(weight)
        nodes += [helper.make_node("Conv", [name, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1], name=f"conv{i}"),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        name = f"r{i}"
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                            ["n", 3, "h", "w"])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", 3, "h", "w"])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), str(path))
    return path


def test_interleaved_onnx_timing_gives_one_row_per_graph_size_and_threads(tmp_path):
    from ffcore.bench import time_onnx_interleaved

    graphs = {"small": _tiny_onnx(tmp_path / "small.onnx", 1), "large": _tiny_onnx(tmp_path / "large.onnx", 12)}
    table = time_onnx_interleaved(graphs, sizes=((64, 64), (48, 80)), threads=(1,), rounds=5, warmup=1)
    assert len(table) == 2 * 2
    assert set(table.graph) == {"small", "large"} and set(zip(table.height, table.width)) == {(64, 64), (48, 80)}
    assert (table.p10_ms <= table.median_ms).all() and (table.median_ms <= table.p90_ms).all()
    assert (table.loadavg_before >= 0).all() and (table.rounds == 5).all()


def test_operator_profile_splits_a_run_into_kernels_and_the_time_between_them(tmp_path):
    from ffcore.bench import onnx_operator_times

    table, totals = onnx_operator_times(_tiny_onnx(tmp_path / "tiny.onnx", 4), size=(64, 64), runs=3, warmup=1)
    nodes = dict(zip(table.operator, table.nodes))
    # the profile describes the optimised graph: ONNX Runtime fuses each Relu into its Conv
    # (and may add layout reorders), so four Conv nodes and no Relu
    assert nodes["Conv"] == 4 and "Relu" not in nodes
    assert table["nodes"].sum() == totals["nodes"]
    assert abs(table["share"].sum() - 1.0) < 1e-9 and (table["kernel_ms"] > 0).all()
    assert totals["wall_ms"] >= totals["kernel_ms"] > 0
    assert totals["overhead_ms"] == pytest.approx(totals["wall_ms"] - totals["kernel_ms"])


def test_the_published_comparison_puts_each_model_at_its_true_count_and_prints_at_8_points():
    import matplotlib.pyplot as plt
    import pandas as pd

    from ffcore.study.benchmarks import LABEL_POINTS, draw_published_comparison

    published = pd.DataFrame({"model": ["FeatherFace (paper)", "YuNet_n"], "params": [490000, 75856],
                              "hard_ap": [78.3, 81.1], "test_scale": [None, "original"]})
    ours = [{"run": "featherface_v1", "label": "FeatherFace V1", "params": 592371, "ap": 57.3}]
    fig = draw_published_comparison(published, ours, "hard", "SYNTHETIC data", {"featherface_v1": 592371})
    try:
        ax = fig.axes[0]
        xs = sorted(round(float(x), 3) for c in ax.collections for x, _ in c.get_offsets())
        # the paper's 0.49M (thop's count) is drawn at the true count, beside our V1: one x for V1
        assert xs == [75.856, 592.371, 592.371]
        title = fig._suptitle.get_text()
        assert "published detectors on WIDER FACE val" in title and "SYNTHETIC data" in title
        sizes = [t.get_fontsize() for t in fig.findobj(match=lambda o: hasattr(o, "get_fontsize") and
                                                        hasattr(o, "get_text") and o.get_text())]
        assert sizes and min(sizes) >= LABEL_POINTS >= 8
    finally:
        plt.close(fig)


def test_the_published_comparison_with_every_published_row_stays_within_the_text_width():
    """Saved with a tight bounding box, the figure is no wider than the text width, so it prints at
    scale and its 8 pt labels stay 8 pt (a one-line title and names past the axes made it 215 mm)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from ffcore.paths import shared_dir
    from ffcore.report.plotting import TEXT_WIDTH
    from ffcore.study.benchmarks import draw_published_comparison

    source = shared_dir() / "reference" / "published_widerface.csv"
    if not source.is_file():
        pytest.skip(f"{source} absent")
    published = pd.read_csv(source).dropna(subset=["params", "hard_ap"])
    ours = [{"run": "featherface_v1", "label": "FeatherFace V1", "params": 592371, "ap": 84.6},
            {"run": "featherface_v2", "label": "FeatherFace V2", "params": 256156, "ap": 62.3}]
    fig = draw_published_comparison(published, ours, "hard", "SYNTHETIC data, not comparable", {"featherface_v1": 592371})
    try:
        fig.canvas.draw()
        width_inches = fig.get_tightbbox(fig.canvas.get_renderer()).width
        assert width_inches <= TEXT_WIDTH * 1.03, f"{width_inches:.2f} in against a text width of {TEXT_WIDTH:.2f} in"
    finally:
        plt.close(fig)
