"""Notebook 05, deployment: the deploy graph step by step, and where ONNX Runtime spends the time.

`deploy_steps_table` exports each model once per step of `ffcore.deploy.DeploySteps` (literal
graph, then each exact rewrite added in turn) and times all those graphs interleaved in ONNX
Runtime; `operator_profile_table` splits one forward pass of each model's exported graph into
kernel time per operator type and the time between kernels (from ONNX Runtime's profiler).
Together they say whether V2's graph is faster than RetinaFace's on this CPU, and why not
when it is not. Timings depend on the machine and its load: the load average is recorded
beside every figure.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ffcore.study.context import Study

DEPLOY_MODELS = ("retinaface_mnet025", "featherface_v2")


def _load(study: Study, name: str):
    from ffcore.models import create_model, load_pretrained
    from ffcore.study.benchmarks import _trained_weights

    weights = _trained_weights(study, [name])
    return load_pretrained(name, weights[name]) if name in weights else create_model(name)


def deploy_graphs(study: Study, models: tuple[str, ...] = DEPLOY_MODELS) -> dict[tuple[str, str], Path]:
    """ONNX files of each model at every step of the deploy ladder: {(model, step): path}.

    Exported once into the study's cache (the file name carries the step); each export runs
    the parity check against the trained model (1e-4) and the deploy rewrite its own (1e-5).
    """
    from ffcore.deploy import DeploySteps, deploy_model
    from ffcore.export import export_onnx

    graphs = {}
    out_dir = study.cache_dir / "deploy"
    for name in models:
        model = None
        for step, steps in DeploySteps().cumulative():
            path = out_dir / f"{name}__{step.replace('+ ', '').replace(' ', '_')}.onnx"
            if not path.is_file():
                model = model if model is not None else _load(study, name)
                # The ladder's graphs are exported "literally" from the rewritten copy.
                export_onnx(deploy_model(model, steps), path, deploy=False, parity_sizes=((320, 320),))
            graphs[(name, step)] = path
    return graphs


def deploy_steps_table(study: Study, models: tuple[str, ...] = DEPLOY_MODELS, size: tuple[int, int] = (640, 640),
                       threads: tuple[int, ...] = (1, 2), rounds: int | None = None) -> pd.DataFrame:
    """Latency of every step of the deploy ladder for each model, all graphs timed interleaved.

    Columns: model, step, nodes (ONNX nodes in the file), median/p10/p90 ms per thread count,
    and the ratio to RetinaFace's deploy graph in the same rounds.
    """
    from ffcore.bench import time_onnx_interleaved
    from ffcore.export import onnx_operators

    graphs = deploy_graphs(study, models)
    rounds = rounds or max(10, study.profile.bench_repeats)
    timed = time_onnx_interleaved({f"{m}|{s}": p for (m, s), p in graphs.items()}, sizes=(size,),
                                  threads=threads, rounds=rounds)
    timed[["model", "step"]] = timed["graph"].str.split("|", expand=True)
    timed["nodes"] = [sum(onnx_operators(graphs[(m, s)]).values()) for m, s in zip(timed.model, timed.step)]
    final = timed["step"] == timed.groupby(["model", "threads"])["step"].transform("last")
    reference = timed[final & (timed.model == "retinaface_mnet025")].set_index("threads")["median_ms"]
    if not reference.empty:
        timed["vs_retinaface_deploy"] = timed["median_ms"] / timed["threads"].map(reference)
    table = timed.drop(columns=["graph"])
    front = ["model", "step", "nodes", "threads", "median_ms", "p10_ms", "p90_ms"]
    table = table[front + [c for c in table.columns if c not in front]].round(3)
    last = table[table.step == table.groupby(["model", "threads"])["step"].transform("last")]
    headline = "; ".join(f"{r.model} {r.median_ms:.1f} ms ({r.threads} thr)" for r in last.itertuples())
    study.save_table(table, "deploy_steps",
                     caption=f"ONNX Runtime latency of each deploy rewrite, {size[0]}x{size[1]}, batch 1, "
                             f"{rounds} interleaved rounds (this machine, load average recorded)",
                     headline=f"deploy graphs: {headline}", machine="this machine's CPU")
    return table


def operator_profile_table(study: Study, models: tuple[str, ...] = DEPLOY_MODELS, size: tuple[int, int] = (640, 640),
                           threads: int = 1, runs: int = 10) -> pd.DataFrame:
    """Per-operator ONNX Runtime profile of each model's deploy graph: kernel ms per operator type,
    plus a row "(between kernels)" with the wall time not spent in any kernel."""
    from ffcore.bench import onnx_operator_times

    graphs = deploy_graphs(study, models)
    rows = []
    for name in models:
        final = [path for (m, _), path in graphs.items() if m == name][-1]
        table, totals = onnx_operator_times(final, size, threads=threads, runs=runs)
        table.insert(0, "model", name)
        rows.append(table)
        rows.append(pd.DataFrame([{"model": name, "operator": "(between kernels)", "nodes": totals["nodes"],
                                   "kernel_ms": totals["overhead_ms"], "share": float("nan")},
                                  {"model": name, "operator": "(wall time per run)", "nodes": totals["nodes"],
                                   "kernel_ms": totals["wall_ms"], "share": float("nan")}]))
    table = pd.concat(rows, ignore_index=True).round(4)
    walls = table[table.operator == "(wall time per run)"].set_index("model")["kernel_ms"]
    kernels = table[~table.operator.str.startswith("(")].groupby("model")["kernel_ms"].sum()
    headline = "; ".join(f"{m}: wall {walls[m]:.1f} ms, kernels {kernels[m]:.1f} ms" for m in models)
    study.save_table(table, "deploy_operator_profile",
                     caption=f"Where the time goes: ONNX Runtime kernel time per operator type, {size[0]}x{size[1]}, "
                             f"{threads} thread(s), mean of {runs} profiled runs (this machine)",
                     headline=headline, machine="this machine's CPU", threads=threads)
    return table
