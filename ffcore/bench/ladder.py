"""The deploy ladder: each model exported at every step of `ffcore.deploy.graph.DeploySteps` (the
literal graph, then each exact rewrite added in turn), timed side by side and profiled."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from torch import nn

from ffcore.bench.operators import onnx_operator_times
from ffcore.bench.timing import time_onnx_interleaved


def export_deploy_ladder(models: dict[str, nn.Module], out_dir: str | Path) -> dict[tuple[str, str], Path]:
    """ONNX files of each model at every step of `ffcore.deploy.graph.DeploySteps` (the literal graph,
    then each exact rewrite added in turn): {(model name, step): path}. Each export runs the
    parity check against the model it came from (1e-4), the rewrite its own (1e-5)."""
    from ffcore.deploy.graph import DeploySteps, deploy_model
    from ffcore.deploy.export import export_onnx

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
    from ffcore.deploy.export import onnx_operators

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
