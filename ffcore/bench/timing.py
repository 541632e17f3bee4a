"""Timing: the benchmark matrix (every runner at every setting, in interleaved rounds), the
same interleaving for ONNX files side by side, and reading the results (speed ratios, targets).

Interleaving means a load spike on a shared machine slows every runner alike, so the *ratios*
between runners stay meaningful even when absolute timings are noisy.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ffcore.bench.runners import PeakRss, Runner, build_runners
from ffcore.bench.settings import BenchConfig


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


def load_average() -> float:
    """The 1-minute load average (/proc/loadavg), recorded beside timings taken on a shared machine."""
    with open("/proc/loadavg", encoding="ascii") as handle:
        return float(handle.read().split()[0])


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
    (`ffcore.bench.peers`) are timed at batch 1 with their own pre/post-processing inside the
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
            from ffcore.bench.peers import load_peers

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


def time_onnx_interleaved(graphs: dict[str, str | Path], sizes: Sequence[tuple[int, int]] = ((640, 640),),
                          threads: Sequence[int] = (1, 2), rounds: int = 30, warmup: int = 3):
    """Forward latency of ONNX files in ONNX Runtime, timed in interleaved rounds; one row per graph, size, threads.

    Every round calls each graph once (the order rotates), so a load spike slows all of them
    alike. Rows hold the median, 10th and 90th percentiles of the rounds in milliseconds and
    the load average before and after the setting.
    """
    import pandas as pd

    from ffcore.deploy.runtime import ort_session
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
