"""Notebook 05, deployment: V2's exported graph against RetinaFace's in ONNX Runtime.

ONNX Runtime timings belong to one machine at one load, not to a study run, so
`benchmarks/bench_deploy_latency.py` measures them (several process launches, interleaved
rounds, the load average kept beside every figure) and writes results/deploy/*.csv, committed
with the repository like the peers' CSV. These functions only read and check those files and
save the notebook's tables; they time nothing. The inputs are random tensors and the timings do
not depend on any dataset, so the tables carry no data stamp.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ffcore.runs.context import Study

BENCH_COMMAND = ".venv/bin/python benchmarks/bench_deploy_latency.py"
RETINAFACE = "retinaface_mnet025"
V2 = "featherface_v2"
# The benchmark's own process adds up to its thread count to the 1-minute load average, and that
# average lags by a minute: a 1-thread step right after the default 2-thread one still reads about 2.
# More than max(threads, 2) plus this margin while timing means other work shared the CPU: flagged.
OTHER_LOAD_MARGIN = 0.5
FILES = {   # file -> columns the readers need
    "deploy_latency.csv": ("launch", "graph", "height", "width", "threads", "median_ms", "loadavg_before",
                           "loadavg_after"),
    "deploy_ladder.csv": ("model", "step", "nodes", "threads", "median_ms", "p10_ms", "p90_ms", "vs_reference",
                          "loadavg_before"),
    "operator_profile.csv": ("model", "operator", "nodes", "kernel_ms", "share", "threads", "loadavg"),
}


class DeployBenchmarkMissingError(FileNotFoundError):
    """A deploy benchmark CSV is not there; the message gives the command that writes it."""


def deploy_dir() -> Path:
    # Committed inputs of the repository: they stay at results/deploy/ even when a study writes
    # its results elsewhere (FFCORE_RESULTS), as the peers' CSV does.
    from ffcore.paths import REPO_ROOT

    return REPO_ROOT / "results" / "deploy"


def read_deploy_csv(name: str, folder: str | Path | None = None) -> pd.DataFrame:
    """One of the benchmark's CSVs (a key of FILES), checked for its columns and rows."""
    path = Path(folder or deploy_dir()) / name
    if not path.is_file():
        raise DeployBenchmarkMissingError(f"no deploy benchmark at {path}: create it with `{BENCH_COMMAND}` "
                                          "on an idle machine")
    table = pd.read_csv(path)
    missing = [c for c in FILES[name] if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: columns {missing} are missing; it was not written by {BENCH_COMMAND} (rerun it)")
    if table.empty:
        raise ValueError(f"{path} has a header but no rows; rerun `{BENCH_COMMAND}`")
    return table


def _load_note(values: pd.Series, threads: pd.Series) -> str:
    low, high = float(values.min()), float(values.max())
    limit = max(float(threads.max()), 2.0) + OTHER_LOAD_MARGIN
    flag = "" if high <= limit else f" (above {limit:g}, the benchmark's own threads + {OTHER_LOAD_MARGIN}: other work shared the CPU)"
    return f"{low:.2f}-{high:.2f}{flag}"


def deploy_latency_summary(launches: pd.DataFrame) -> pd.DataFrame:
    """Per size and thread count: each graph's median over launches of its launch median, and the
    V2 / RetinaFace ratio taken launch by launch (min / median / max, launches V2 was not slower)."""
    keys = ["height", "width", "threads"]
    wide = launches.pivot_table(index=["launch", *keys], columns="graph", values="median_ms").reset_index()
    if RETINAFACE not in wide or V2 not in wide:
        raise ValueError(f"the deploy latency CSV needs rows for {RETINAFACE} and {V2}; it has "
                         f"{', '.join(sorted(set(launches['graph'])))}")
    rows = []
    for key, group in wide.groupby(keys):
        ratio = group[V2] / group[RETINAFACE]
        row = {"size": f"{key[0]}x{key[1]}", "threads": int(key[2]), "launches": len(group),
               "RetinaFace ms": group[RETINAFACE].median(), "V2 deploy ms": group[V2].median()}
        if f"{V2}_literal" in group:
            row["V2 literal ms"] = group[f"{V2}_literal"].median()
        row.update({"V2/RetinaFace min": ratio.min(), "V2/RetinaFace median": ratio.median(),
                    "V2/RetinaFace max": ratio.max(), "launches V2 not slower": int((ratio <= 1.0).sum())})
        rows.append(row)
    return pd.DataFrame(rows).round(3)


def deploy_latency_table(study: Study, folder: str | Path | None = None) -> pd.DataFrame:
    """V2's deploy graph (and its literal graph) against RetinaFace's, ONNX Runtime FP32, batch 1:
    the distribution over separate process launches."""
    launches = read_deploy_csv("deploy_latency.csv", folder)
    summary = deploy_latency_summary(launches)
    not_slower, cells = int(summary["launches V2 not slower"].sum()), int(summary["launches"].sum())
    study.save_table(summary, "deploy_latency", data_free=True, load_average=_load_note(launches["loadavg_before"], launches["threads"]),
                     source="results/deploy/deploy_latency.csv",
                     caption=f"ONNX Runtime FP32 forward latency, batch 1, {launches['launch'].nunique()} process "
                             f"launches of {int(launches['rounds'].max()) if 'rounds' in launches else '?'} "
                             f"interleaved rounds (load average {_load_note(launches['loadavg_before'], launches['threads'])})",
                     headline=f"V2 deploy graph not slower than RetinaFace in {not_slower} of {cells} "
                              f"launch x setting cells; median ratio "
                              f"{summary['V2/RetinaFace median'].min():.2f}-{summary['V2/RetinaFace median'].max():.2f}")
    return summary


def deploy_ladder_table(study: Study, folder: str | Path | None = None) -> pd.DataFrame:
    """Each exact rewrite of the deploy graph added in turn, every graph timed in the same rounds:
    what each step is worth, against RetinaFace's deploy graph (`vs_reference`)."""
    ladder = read_deploy_csv("deploy_ladder.csv", folder)
    table = ladder[[c for c in ("model", "step", "nodes", "threads", "median_ms", "p10_ms", "p90_ms", "vs_reference")
                    if c in ladder]]
    last = table[table["step"] == table.groupby(["model", "threads"])["step"].transform("last")]
    study.save_table(table, "deploy_ladder", data_free=True, load_average=_load_note(ladder["loadavg_before"], ladder["threads"]),
                     source="results/deploy/deploy_ladder.csv",
                     caption="Deploy ladder at 640x640, batch 1: the literal graph, then each exact rewrite added "
                             f"(load average {_load_note(ladder['loadavg_before'], ladder['threads'])})",
                     headline="; ".join(f"{r.model} all steps {r.median_ms:.1f} ms ({r.threads} thr)"
                                        for r in last.itertuples()))
    return table


def operator_profile_table(study: Study, folder: str | Path | None = None) -> pd.DataFrame:
    """Where ONNX Runtime spends each deploy graph's time: kernel ms per operator type (the eight
    largest, the rest summed), the time between kernels and the wall time of a run."""
    profile = read_deploy_csv("operator_profile.csv", folder)
    rows = []
    for model, group in profile.groupby("model", sort=False):
        kernels = group[~group["operator"].str.startswith("(")].sort_values("kernel_ms", ascending=False)
        top, rest = kernels.head(8), kernels.iloc[8:]
        rows.append(top[["model", "operator", "nodes", "kernel_ms", "share"]])
        if len(rest):
            rows.append(pd.DataFrame([{"model": model, "operator": f"({len(rest)} other operator types)",
                                       "nodes": int(rest["nodes"].sum()), "kernel_ms": rest["kernel_ms"].sum(),
                                       "share": rest["share"].sum()}]))
        rows.append(group[group["operator"].str.startswith("(")][["model", "operator", "nodes", "kernel_ms"]])
    table = pd.concat(rows, ignore_index=True).round(3)
    walls = profile[profile["operator"] == "(wall time per run)"].set_index("model")["kernel_ms"]
    study.save_table(table, "deploy_operator_profile", data_free=True, load_average=_load_note(profile["loadavg"], profile["threads"]),
                     source="results/deploy/operator_profile.csv",
                     caption=f"ONNX Runtime kernel time per operator type, deploy graphs, 640x640, "
                             f"{int(profile['threads'].iloc[0])} thread(s) (load average {_load_note(profile['loadavg'], profile['threads'])})",
                     headline="; ".join(f"{m} wall {ms:.1f} ms" for m, ms in walls.items()))
    return table


def describe_deployment(study: Study, folder: str | Path | None = None):
    """"What this shows" for the deployment tables: the verdict on V2 vs RetinaFace, from the CSVs."""
    from ffcore.report.tables import markdown

    launches = read_deploy_csv("deploy_latency.csv", folder)
    summary = deploy_latency_summary(launches)
    profile = read_deploy_csv("operator_profile.csv", folder)
    not_slower, cells = int(summary["launches V2 not slower"].sum()), int(summary["launches"].sum())
    lines = [f"{r['size']}, {r['threads']} thread(s): V2 / RetinaFace {r['V2/RetinaFace median']:.2f} "
             f"(launches {r['V2/RetinaFace min']:.2f}-{r['V2/RetinaFace max']:.2f}; RetinaFace "
             f"{r['RetinaFace ms']:.1f} ms, V2 {r['V2 deploy ms']:.1f} ms)" for _, r in summary.iterrows()]
    if not_slower == cells:
        verdict = "V2's deploy graph was not slower than RetinaFace's in any launch at any setting."
    elif not_slower == 0:
        verdict = "V2's deploy graph was slower than RetinaFace's in every launch at every setting."
    else:
        verdict = (f"V2's deploy graph was not slower in {not_slower} of {cells} launch x setting cells: "
                   "the two are within this machine's launch-to-launch spread.")
    where = []
    for model, group in profile.groupby("model", sort=False):
        kernels = group[~group["operator"].str.startswith("(")]
        conv = float(kernels.loc[kernels["operator"].str.contains("Conv"), "kernel_ms"].sum())
        between = float(group.loc[group["operator"] == "(between kernels)", "kernel_ms"].iloc[0])
        wall = float(group.loc[group["operator"] == "(wall time per run)", "kernel_ms"].iloc[0])
        where.append(f"{model}: {int(kernels['nodes'].sum())} nodes, wall {wall:.1f} ms, convolutions {conv:.1f} ms, "
                     f"other kernels {float(kernels['kernel_ms'].sum()) - conv:.1f} ms, between kernels {between:.1f} ms")
    load = _load_note(launches["loadavg_before"], launches["threads"])
    return markdown("**What this shows.** " + verdict + "\n\n- " + "\n- ".join(lines)
                    + "\n\nWhere the time goes (1 thread):\n\n- " + "\n- ".join(where)
                    + f"\n\nLoad average while timing: {load}. Measured by `{BENCH_COMMAND}`; "
                      "rerun it to refresh these figures on another machine.")
