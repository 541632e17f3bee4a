"""Latency, memory and size benchmarks: PyTorch eager, ONNX Runtime FP32 and INT8, and peers.

Method. For every setting (input size, batch, threads) all runners — each model under each
backend, plus the installed peer detectors at batch 1 — are warmed up, then timed in
rounds: one call of every runner per round, in an order that rotates from round to round.
Interleaving means a load spike on a shared machine slows every runner alike, so the
*ratios* between runners stay meaningful even when absolute timings are noisy. Each call
times three stages separately: pre-processing (resize + `ffcore.preprocess.image_to_tensor`),
the forward pass, and post-processing (`ffcore.postprocess.postprocess`). Reported: median,
10th/90th percentiles and IQR of the forward pass, medians of the other stages, the median
end-to-end time, the peak process-RSS increase while the runner was built and warmed up,
and the size of the model file.

`BENCH_SETTINGS` holds the named benchmark settings: "full" (the thesis table), "target" (the speed
targets only) and "smoke" (one setting, a few repeats, for notebooks and tests).
"""

from __future__ import annotations

import io
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

BACKENDS = ("torch", "onnx_fp32", "onnx_int8")


@dataclass(frozen=True)
class BenchConfig:
    """The benchmark matrix. Sizes are (height, width)."""

    sizes: tuple[tuple[int, int], ...] = ((640, 640), (480, 640))
    batches: tuple[int, ...] = (1, 8)
    threads: tuple[int, ...] = (1, 2)
    backends: tuple[str, ...] = BACKENDS
    repeats: int = 20
    warmup: int = 3
    calibration_images: int = 8     # INT8 calibration set (latency barely depends on it)

    def __post_init__(self):
        unknown = set(self.backends) - set(BACKENDS)
        if unknown:
            raise ValueError(f"unknown backends {sorted(unknown)}; choose from {BACKENDS}")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {self.repeats}, {self.warmup}")


BENCH_SETTINGS = {
    "full": BenchConfig(),
    "target": BenchConfig(sizes=((640, 640),), batches=(1,), threads=(2,), backends=("onnx_fp32",),
                          repeats=30, warmup=5),
    "smoke": BenchConfig(sizes=((640, 640),), batches=(1,), threads=(2,), backends=("torch", "onnx_fp32"),
                         repeats=3, warmup=1),
}


def get_bench_config(name: str, **overrides) -> BenchConfig:
    if name not in BENCH_SETTINGS:
        raise KeyError(f"unknown benchmark setting {name!r}; choose from {sorted(BENCH_SETTINGS)}")
    return replace(BENCH_SETTINGS[name], **overrides)


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------

def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of `fn()` over `repeats` calls after `warmup` untimed calls."""
    import statistics

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def process_rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class PeakRss:
    """Samples this process's RSS in a background thread; `.peak_delta` is max RSS minus RSS at entry.

    ONNX Runtime and PyTorch allocate outside Python, so tracemalloc would miss them;
    the process RSS sees both.
    """

    def __init__(self, interval_s: float = 0.002):
        self.interval_s = interval_s
        self.start = self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> "PeakRss":
        self.start = self.peak = process_rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, process_rss())
            time.sleep(self.interval_s)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, process_rss())

    @property
    def peak_delta(self) -> int:
        return self.peak - self.start


# --------------------------------------------------------------------------------------------
# Runners: one thing to time (a model under a backend, or a peer detector)
# --------------------------------------------------------------------------------------------

@dataclass
class Runner:
    """A timed pipeline. `forward(batch)` for detectors; `detect(image)` for peers (whole pipeline)."""

    model: str
    backend: str
    file_bytes: int | None = None
    parameters: int | None = None
    prepare: Callable[[int], None] | None = None      # called with the thread count before a setting
    forward: Callable[[torch.Tensor], tuple] | None = None
    detect: Callable[[np.ndarray], object] | None = None
    peak_rss_delta: dict[int, int] = field(default_factory=dict)   # threads -> bytes
    note: str = ""
    prior_config: object = None   # the detector's anchors (None: the default two); postprocess decodes with them

    @property
    def is_peer(self) -> bool:
        return self.detect is not None


def _state_dict_bytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def _torch_runner(name: str, model: nn.Module) -> Runner:
    model = model.eval()

    def forward(x):
        with torch.inference_mode():
            return model(x)[:3]

    return Runner(model=name, backend="torch", file_bytes=_state_dict_bytes(model),
                  parameters=sum(p.numel() for p in model.parameters()),
                  prepare=lambda threads: None, forward=forward,
                  prior_config=getattr(model, "prior_config", None))


def _onnx_runner(name: str, backend: str, onnx_path: Path, parameters: int, prior_config=None) -> Runner:
    from ffcore.export import OnnxDetector

    sessions: dict[int, OnnxDetector] = {}
    runner = Runner(model=name, backend=backend, file_bytes=onnx_path.stat().st_size, parameters=parameters,
                    prior_config=prior_config)
    current: list[OnnxDetector] = []

    def prepare(threads: int) -> None:
        if threads not in sessions:
            sessions[threads] = OnnxDetector(onnx_path, threads=threads, name=name)
        current[:] = [sessions[threads]]

    runner.prepare = prepare
    runner.forward = lambda x: current[0](x)
    return runner


def _calibration_files(count: int) -> list[Path]:
    """Validation images of the synthetic dataset when it exists, else the shared demo photos."""
    from ffcore.export import calibration_images
    from ffcore.paths import default_synthetic_root, shared_dir

    try:
        return calibration_images(default_synthetic_root(), count=count)
    except FileNotFoundError:
        return calibration_images(shared_dir() / "images", count=count)


def build_runners(models: Sequence[tuple[str, nn.Module]], backends: Sequence[str], work_dir: Path,
                  calibration_count: int = 8, calibration_size: int = 640) -> list[Runner]:
    from ffcore.export import export_onnx, quantize_int8

    runners = []
    for name, model in models:
        parameters = sum(p.numel() for p in model.parameters())
        priors = getattr(model, "prior_config", None)   # the exported graph has the model's heads
        if "torch" in backends:
            runners.append(_torch_runner(name, model))
        if "onnx_fp32" in backends or "onnx_int8" in backends:
            fp32 = work_dir / f"{name}.onnx"
            export_onnx(model, fp32, parity_sizes=((256, 256),), strict=True)
            if "onnx_fp32" in backends:
                runners.append(_onnx_runner(name, "onnx_fp32", fp32, parameters, priors))
            if "onnx_int8" in backends:
                int8 = quantize_int8(fp32, work_dir / f"{name}_int8.onnx", _calibration_files(calibration_count),
                                     size=calibration_size)
                runners.append(_onnx_runner(name, "onnx_int8", int8, parameters, priors))
    return runners


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

def _preprocess(source: np.ndarray, height: int, width: int, batch: int) -> torch.Tensor:
    import cv2

    from ffcore.preprocess import image_to_tensor

    resized = cv2.resize(source, (width, height), interpolation=cv2.INTER_LINEAR)
    tensors = [image_to_tensor(resized) for _ in range(batch)]
    return tensors[0] if batch == 1 else torch.cat(tensors, dim=0)


def _time_detector_call(runner: Runner, source: np.ndarray, height: int, width: int, batch: int) -> tuple:
    from ffcore.postprocess import postprocess

    t0 = time.perf_counter()
    x = _preprocess(source, height, width, batch)
    t1 = time.perf_counter()
    loc, conf, landm = runner.forward(x)
    t2 = time.perf_counter()
    if runner.prior_config is None:
        postprocess(loc, conf, landm, (height, width))
    else:
        postprocess(loc, conf, landm, (height, width), prior_config=runner.prior_config)
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


def _time_peer_call(runner: Runner, source: np.ndarray, height: int, width: int) -> tuple:
    import cv2

    image = cv2.resize(source, (width, height), interpolation=cv2.INTER_LINEAR)
    t0 = time.perf_counter()
    runner.detect(image)
    return np.nan, time.perf_counter() - t0, np.nan


def _set_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:
        pass


def _summarise(runner: Runner, height: int, width: int, batch: int, threads: int, times: np.ndarray) -> dict:
    ms = times * 1e3                                     # [repeats, 3] pre, forward, post
    forward = ms[:, 1]
    p10, p25, p50, p75, p90 = np.percentile(forward, [10, 25, 50, 75, 90])
    end_to_end = np.nansum(ms, axis=1)
    return {
        "model": runner.model, "backend": runner.backend, "height": height, "width": width,
        "batch": batch, "threads": threads, "repeats": len(ms),
        "forward_median_ms": p50, "forward_p10_ms": p10, "forward_p90_ms": p90, "forward_iqr_ms": p75 - p25,
        "preprocess_median_ms": float(np.median(ms[:, 0])) if not runner.is_peer else np.nan,
        "postprocess_median_ms": float(np.median(ms[:, 2])) if not runner.is_peer else np.nan,
        "end_to_end_median_ms": float(np.median(end_to_end)),
        "per_image_ms": float(np.median(end_to_end)) / batch,
        "peak_rss_delta_mb": runner.peak_rss_delta.get(threads, np.nan) / 2 ** 20,
        "model_file_mb": (runner.file_bytes or np.nan) / 1e6,
        "parameters": runner.parameters if runner.parameters is not None else np.nan,
        "note": runner.note,
    }


def time_runners(runners: Sequence[Runner], config: BenchConfig, source: np.ndarray,
                 progress: Callable[[str], None] | None = None) -> list[dict]:
    rows = []
    previous_threads = torch.get_num_threads()
    try:
        for threads in config.threads:
            _set_threads(threads)
            for height, width in config.sizes:
                for batch in config.batches:
                    active = [r for r in runners if not (r.is_peer and batch != 1)]
                    calls = {}
                    for runner in active:
                        if runner.is_peer:
                            calls[id(runner)] = lambda r=runner: _time_peer_call(r, source, height, width)
                        else:
                            calls[id(runner)] = (lambda r=runner:
                                                 _time_detector_call(r, source, height, width, batch))
                    # Warm-up, measuring the memory the runner needs for its first calls at this setting.
                    for runner in active:
                        with PeakRss() as rss:
                            if runner.prepare is not None:
                                runner.prepare(threads)
                            for _ in range(max(1, config.warmup)):
                                calls[id(runner)]()
                        runner.peak_rss_delta[threads] = max(runner.peak_rss_delta.get(threads, 0),
                                                             rss.peak_delta)
                    times = {id(r): [] for r in active}
                    for round_index in range(config.repeats):
                        shift = round_index % len(active)
                        for runner in active[shift:] + active[:shift]:
                            times[id(runner)].append(calls[id(runner)]())
                    for runner in active:
                        rows.append(_summarise(runner, height, width, batch, threads, np.asarray(times[id(runner)])))
                    if progress:
                        progress(f"timed {height}x{width} batch {batch} threads {threads}")
    finally:
        torch.set_num_threads(previous_threads)
    return rows


def run_benchmark(models: Sequence[str | tuple[str, nn.Module]], config: BenchConfig = BenchConfig(),
                  weights: dict[str, str] | None = None, peers: bool = False,
                  work_dir: str | Path | None = None, progress: Callable[[str], None] | None = None):
    """Benchmark registered models (names, or (name, module) pairs); returns a pandas DataFrame.

    `weights` maps a model name to a checkpoint (random weights otherwise: the timings of the
    forward pass do not depend on the weights; post-processing does, through the number of
    candidate boxes above the score threshold). With `peers`, installed peer detectors
    (`ffcore.peers`) are timed at batch 1 with their own pre/post-processing inside the
    forward column; the ones not installed are listed in `table.attrs["skipped_peers"]`.
    """
    import pandas as pd

    from ffcore.preprocess import sample_image

    weights = weights or {}
    resolved = []
    for entry in models:
        if isinstance(entry, str):
            from ffcore.models import create_model, load_pretrained

            entry = (entry, load_pretrained(entry, weights[entry]) if entry in weights else create_model(entry))
        resolved.append(entry)

    with tempfile.TemporaryDirectory(prefix="ffcore-bench-") as scratch:
        directory = Path(work_dir) if work_dir else Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        runners = build_runners(resolved, config.backends, directory, config.calibration_images,
                                calibration_size=max(max(s) for s in config.sizes))
        skipped = {}
        if peers:
            from ffcore.peers import load_peers

            peer_runners, skipped = load_peers()
            runners += [Runner(model=p.name, backend=p.backend, detect=p.detect, file_bytes=p.file_bytes,
                               note=p.note) for p in peer_runners]
        # A large real photo as the source, so resizing costs what it costs on real inputs.
        source = sample_image(886, 1280)
        rows = time_runners(runners, config, source, progress)
    table = pd.DataFrame(rows)
    table.attrs["skipped_peers"] = skipped
    table.attrs["config"] = config
    return table


# --------------------------------------------------------------------------------------------
# Reading the results
# --------------------------------------------------------------------------------------------

def speed_ratios(table, reference: str, backend: str = "onnx_fp32", size: tuple[int, int] = (640, 640),
                 batch: int = 1, threads: int = 2, column: str = "forward_median_ms"):
    """Median time of every model at one setting and its speed-up against `reference` (ref ms / model ms)."""
    selected = table[(table.backend == backend) & (table.height == size[0]) & (table.width == size[1])
                     & (table.batch == batch) & (table.threads == threads)]
    if reference not in set(selected.model):
        raise KeyError(f"reference model {reference!r} has no row at {backend} {size} batch {batch} "
                       f"threads {threads}; models there: {sorted(set(selected.model))}")
    reference_ms = float(selected.loc[selected.model == reference, column].iloc[0])
    out = selected[["model", column]].copy()
    out[f"speedup_vs_{reference}"] = reference_ms / out[column]
    return out.reset_index(drop=True)


def check_targets(table, size: tuple[int, int] = (640, 640), threads: int = 2) -> dict:
    """The thesis's speed targets (ONNX Runtime FP32, batch 1): V2 >= 1.5x faster than V1, no slower than RetinaFace."""
    ms = speed_ratios(table, "featherface_v2", "onnx_fp32", size, 1, threads).set_index("model")["forward_median_ms"]
    v1_over_v2 = float(ms["featherface_v1"] / ms["featherface_v2"])
    retina_over_v2 = float(ms["retinaface_mnet025"] / ms["featherface_v2"])
    return {"v1_ms": float(ms["featherface_v1"]), "v2_ms": float(ms["featherface_v2"]),
            "retinaface_ms": float(ms["retinaface_mnet025"]),
            "v2_speedup_vs_v1": v1_over_v2, "v2_speedup_vs_retinaface": retina_over_v2,
            "v2_at_least_1.5x_faster_than_v1": v1_over_v2 >= 1.5,
            "v2_no_slower_than_retinaface": retina_over_v2 >= 1.0}


def latency_figure(table, size: tuple[int, int] = (640, 640), batch: int = 1, threads: int | None = None,
                   title: str | None = None):
    """Bar chart of the forward-pass medians (p10-p90 whiskers) per model and backend; returns the Figure."""
    from ffcore.plotting import model_styles, new_figure, pretty_name

    threads = threads if threads is not None else int(table.threads.max())
    selected = table[(table.height == size[0]) & (table.width == size[1]) & (table.batch == batch)
                     & (table.threads == threads)]
    if selected.empty:
        raise ValueError(f"no benchmark rows at {size[0]}x{size[1]} batch {batch} threads {threads}")
    fig, ax = new_figure(aspect=0.62)
    backends = list(dict.fromkeys(selected.backend))
    models = list(dict.fromkeys(selected.model))
    styles = model_styles(models)   # one colour per model of the figure, never two alike
    width = 0.8 / len(backends)
    hatches = ("", "//", "..", "xx", "\\\\")
    for b, backend in enumerate(backends):
        for m, model in enumerate(models):
            row = selected[(selected.model == model) & (selected.backend == backend)]
            if row.empty:
                continue
            row = row.iloc[0]
            error = [[row.forward_median_ms - row.forward_p10_ms], [row.forward_p90_ms - row.forward_median_ms]]
            ax.bar(m + (b - (len(backends) - 1) / 2) * width, row.forward_median_ms, width, yerr=error,
                   color=styles[model]["color"], hatch=hatches[b % len(hatches)], edgecolor="black",
                   linewidth=0.5, capsize=2, error_kw={"elinewidth": 0.8})
    # labels end under their bar (anchored at their right end), so a long name never leaves the figure
    ax.set_xticks(range(len(models)), [pretty_name(m) for m in models], rotation=25, ha="right",
                  rotation_mode="anchor")
    ax.set_ylabel("forward pass, median ms (p10-p90)")
    ax.set_title(title or f"CPU latency, {size[0]}x{size[1]}, batch {batch}, {threads} thread(s)")
    if len(backends) > 1:
        # colour is the model (named on the x axis); the legend explains the hatch, in neutral grey,
        # outside the axes so it never covers a bar
        from matplotlib.patches import Patch

        fig.legend(handles=[Patch(facecolor="#dddddd", edgecolor="black", hatch=hatches[b % len(hatches)],
                                  label=backend) for b, backend in enumerate(backends)], title="backend",
                   loc="outside right upper", fontsize=7, title_fontsize=7, frameon=False)
    else:
        ax.text(0.99, 0.97, f"backend: {backends[0]}", transform=ax.transAxes, ha="right", va="top", fontsize=7)
    return fig


def torch_operator_times(model: nn.Module, size: int | tuple[int, int] = 640, threads: int = 1,
                         repeats: int = 2, top: int = 15):
    """torch.profiler table of the top operators of `model`'s forward pass (CPU self time).

    Shows where the time goes, e.g. that `torchvision::deform_conv2d` dominates FeatherFace V1.
    Columns: operator, calls, self_cpu_ms (per forward), share of the total self time.
    """
    import pandas as pd
    from torch.profiler import ProfilerActivity, profile

    height, width = (size, size) if isinstance(size, int) else size
    x = torch.randn(1, 3, height, width) * 50
    model = model.eval()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            model(x)   # warm-up outside the profile
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(repeats):
                    model(x)
    finally:
        torch.set_num_threads(previous)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    rows = [{"operator": e.key, "calls": e.count // repeats,
             "self_cpu_ms": e.self_cpu_time_total / 1e3 / repeats,
             "share": e.self_cpu_time_total / total} for e in events]
    return pd.DataFrame(rows).sort_values("self_cpu_ms", ascending=False).head(top).reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# ONNX Runtime graphs side by side: interleaved timing and per-operator profiles
# --------------------------------------------------------------------------------------------

def load_average() -> float:
    """The 1-minute load average (/proc/loadavg), recorded beside timings taken on a shared machine."""
    with open("/proc/loadavg", encoding="ascii") as handle:
        return float(handle.read().split()[0])


def time_onnx_interleaved(graphs: dict[str, str | Path], sizes: Sequence[tuple[int, int]] = ((640, 640),),
                          threads: Sequence[int] = (1, 2), rounds: int = 30, warmup: int = 3):
    """Forward latency of ONNX files in ONNX Runtime, timed in interleaved rounds; one row per graph, size, threads.

    Every round calls each graph once (the order rotates), so a load spike slows all of them
    alike. Rows hold the median, 10th and 90th percentiles of the rounds in milliseconds and
    the load average before and after the setting.
    """
    import pandas as pd

    from ffcore.export import ort_session
    from ffcore.preprocess import sample_batch

    rows = []
    for count in threads:
        sessions = {name: ort_session(path, threads=count) for name, path in graphs.items()}
        for height, width in sizes:
            feed = sample_batch(height, width).numpy()
            calls = {name: (lambda s=session: s.run(None, {s.get_inputs()[0].name: feed}))
                     for name, session in sessions.items()}
            for call in calls.values():
                for _ in range(warmup):
                    call()
            load_before = load_average()
            times = {name: [] for name in calls}
            names = list(calls)
            for round_index in range(rounds):
                shift = round_index % len(names)
                for name in names[shift:] + names[:shift]:
                    start = time.perf_counter()
                    calls[name]()
                    times[name].append(time.perf_counter() - start)
            load_after = load_average()
            for name, values in times.items():
                ms = np.asarray(values) * 1e3
                rows.append({"graph": name, "height": height, "width": width, "threads": count, "rounds": rounds,
                             "median_ms": float(np.median(ms)), "p10_ms": float(np.percentile(ms, 10)),
                             "p90_ms": float(np.percentile(ms, 90)), "loadavg_before": load_before,
                             "loadavg_after": load_after})
    return pd.DataFrame(rows)


def onnx_operator_times(path: str | Path, size: tuple[int, int] = (640, 640), threads: int = 1,
                        runs: int = 10, warmup: int = 3):
    """Where the time goes in ONNX Runtime: kernel time per operator type, per run, from its profiler.

    Returns (table, totals): table rows are operator types of the optimised graph with
    `nodes`, `kernel_ms` (mean per run) and `share` of the kernel time; totals holds the
    mean wall time of a run (`wall_ms`), the summed kernel time (`kernel_ms`) and their
    difference (`overhead_ms`: scheduling, memory planning and the calls between nodes).
    """
    import json

    import onnxruntime as ort
    import pandas as pd

    from ffcore.preprocess import sample_batch

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="ffcore_ortprof_") as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: sample_batch(*size).numpy()}
        for _ in range(warmup):
            session.run(None, feed)
        walls = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, feed)
            walls.append(time.perf_counter() - start)
        events = json.loads(Path(session.end_profiling()).read_text())
    # Node events of the timed runs only: the profile also holds the warm-up runs, in order.
    run_events = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    if len(run_events) < runs:
        raise RuntimeError(f"ONNX Runtime profile of {path} has {len(run_events)} runs, expected {runs + warmup}")
    first_timed = run_events[-runs]["ts"]
    kernel: dict[str, float] = {}
    nodes: dict[str, set] = {}
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time") or event["ts"] < first_timed:
            continue
        op = event.get("args", {}).get("op_name", "?")
        kernel[op] = kernel.get(op, 0.0) + event["dur"] / 1e3 / runs
        nodes.setdefault(op, set()).add(event["name"])
    table = pd.DataFrame([{"operator": op, "nodes": len(nodes[op]), "kernel_ms": ms} for op, ms in kernel.items()])
    table = table.sort_values("kernel_ms", ascending=False, ignore_index=True)
    total_kernel = float(table["kernel_ms"].sum())
    table["share"] = table["kernel_ms"] / total_kernel
    wall = float(np.mean(walls) * 1e3)
    totals = {"wall_ms": wall, "kernel_ms": total_kernel, "overhead_ms": wall - total_kernel,
              "nodes": int(table["nodes"].sum()), "loadavg": load_average(), "threads": threads,
              "height": size[0], "width": size[1]}
    return table, totals


# ------------------------------------------------------------------------ the deploy ladder
def export_deploy_ladder(models: dict[str, nn.Module], out_dir: str | Path) -> dict[tuple[str, str], Path]:
    """ONNX files of each model at every step of `ffcore.deploy.DeploySteps` (the literal graph,
    then each exact rewrite added in turn): {(model name, step): path}. Each export runs the
    parity check against the model it came from (1e-4), the rewrite its own (1e-5)."""
    from ffcore.deploy import DeploySteps, deploy_model
    from ffcore.export import export_onnx

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    graphs = {}
    for name, model in models.items():
        for step, steps in DeploySteps().cumulative():
            path = out_dir / f"{name}__{step.replace('+ ', '').replace(' ', '_')}.onnx"
            # exported "literally" from the rewritten copy, so the file holds exactly this step
            export_onnx(deploy_model(model, steps), path, deploy=False, parity_sizes=((320, 320),))
            graphs[(name, step)] = path
    return graphs


def time_deploy_ladder(graphs: dict[tuple[str, str], Path], size: tuple[int, int] = (640, 640),
                       threads: Sequence[int] = (1, 2), rounds: int = 30, reference: str = "retinaface_mnet025"):
    """Every graph of the ladder timed in the same interleaved rounds (`time_onnx_interleaved`).

    Columns: model, step, nodes (ONNX nodes in the file), threads, median/p10/p90 ms, the load
    average, and `vs_reference`: the ratio to `reference`'s last step in the same rounds."""
    from ffcore.export import onnx_operators

    timed = time_onnx_interleaved({f"{m}|{s}": p for (m, s), p in graphs.items()}, sizes=(size,),
                                  threads=threads, rounds=rounds)
    timed[["model", "step"]] = timed["graph"].str.split("|", expand=True)
    timed["nodes"] = [sum(onnx_operators(graphs[(m, s)]).values()) for m, s in zip(timed.model, timed.step)]
    last = timed["step"] == timed.groupby(["model", "threads"])["step"].transform("last")
    baseline = timed[last & (timed.model == reference)].set_index("threads")["median_ms"]
    timed["vs_reference"] = timed["median_ms"] / timed["threads"].map(baseline) if not baseline.empty else np.nan
    front = ["model", "step", "nodes", "height", "width", "threads", "median_ms", "p10_ms", "p90_ms", "vs_reference"]
    return timed[front + [c for c in timed.columns if c not in front and c != "graph"]].round(4)


def deploy_operator_profile(graphs: dict[tuple[str, str], Path], size: tuple[int, int] = (640, 640),
                            threads: int = 1, runs: int = 10):
    """`onnx_operator_times` of each model's last ladder graph, one table: kernel ms per operator
    type, then "(between kernels)" and "(wall time per run)" rows, with the load average."""
    import pandas as pd

    frames = []
    for name in dict.fromkeys(m for m, _ in graphs):
        final = [path for (m, _), path in graphs.items() if m == name][-1]
        table, totals = onnx_operator_times(final, size, threads=threads, runs=runs)
        table = pd.concat([table, pd.DataFrame([
            {"operator": "(between kernels)", "nodes": totals["nodes"], "kernel_ms": totals["overhead_ms"]},
            {"operator": "(wall time per run)", "nodes": totals["nodes"], "kernel_ms": totals["wall_ms"]}])],
            ignore_index=True)
        table.insert(0, "model", name)
        table[["height", "width", "threads", "runs", "loadavg"]] = (size[0], size[1], threads, runs, totals["loadavg"])
        frames.append(table)
    return pd.concat(frames, ignore_index=True).round(4)
