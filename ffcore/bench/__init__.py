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

Rooms: `settings` (the named matrices, `BENCH_SETTINGS`), `runners` (what is timed, and the
memory sampler), `timing` (the interleaved timers and reading their tables), `operators`
(per-operator profiles), `ladder` (the deploy ladder). The figure drawn from a benchmark
table is the study's (`ffcore.study.bench_figures`).
"""

from __future__ import annotations

from ffcore.bench.ladder import deploy_operator_profile, export_deploy_ladder, time_deploy_ladder
from ffcore.bench.operators import onnx_operator_times, torch_operator_times
from ffcore.bench.runners import PeakRss, Runner, build_runners, process_rss
from ffcore.bench.settings import BACKENDS, BENCH_SETTINGS, BenchConfig, get_bench_config
from ffcore.bench.timing import (check_targets, load_average, median_seconds, run_benchmark, speed_ratios,
                                 time_onnx_interleaved, time_runners)

__all__ = ["BACKENDS", "BENCH_SETTINGS", "BenchConfig", "PeakRss", "Runner", "build_runners", "check_targets",
           "deploy_operator_profile", "export_deploy_ladder", "get_bench_config", "load_average", "median_seconds",
           "onnx_operator_times", "process_rss", "run_benchmark", "speed_ratios", "time_deploy_ladder",
           "time_onnx_interleaved", "time_runners", "torch_operator_times"]
