"""Where the time goes: per-operator profiles of a PyTorch model and of an ONNX Runtime graph."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ffcore.bench.timing import load_average


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
