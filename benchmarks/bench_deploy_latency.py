"""FeatherFace V2 vs RetinaFace in ONNX Runtime, as `ffcore export` writes them: one command.

    .venv/bin/python benchmarks/bench_deploy_latency.py [--launches 6] [--rounds 30]
        [--sizes 640x640 480x640] [--threads 1 2] [--out-dir results/deploy] [--no-ladder]

1. Exports RetinaFace-MobileNet-0.25 (deploy graph), FeatherFace V2 (deploy graph) and V2's
   literal graph (`--literal`) once, then starts `--launches` separate Python processes. Each
   process builds fresh ONNX Runtime sessions and times all graphs in interleaved rounds
   (`ffcore.bench.time_onnx_interleaved`, batch 1) at every size and thread count, recording
   the 1-minute load average before and after. Latency on a shared CPU moves from launch to
   launch by more than the difference between the models, so the script reports the
   distribution over launches -- min / median / max of each launch's median, and of the
   V2 / RetinaFace ratio measured within the same rounds -- never one median.
2. Unless `--no-ladder`: the deploy ladder (`ffcore.bench.export_deploy_ladder`: each exact
   rewrite added in turn) of both models timed interleaved at 640x640, and ONNX Runtime's
   per-operator profile of both deploy graphs at 640x640, 1 thread.

Writes `deploy_latency.csv` (every launch), `deploy_ladder.csv` and `operator_profile.csv` to
`--out-dir`; notebook 05 reads them from results/deploy/ (`ffcore.study.onnx_latency`). Run it on an
idle machine: the load average is kept beside every figure and the notebook flags a loaded run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RETINAFACE = "retinaface_mnet025"
V2 = "featherface_v2"


def _option(argv: list[str], name: str, default, many: bool = False):
    if name not in argv:
        return default
    start = argv.index(name) + 1
    if not many:
        return argv[start]
    values = []
    for value in argv[start:]:
        if value.startswith("--"):
            break
        values.append(value)
    return values


def export_graphs(work_dir: Path) -> dict[str, str]:
    """The three graphs: RetinaFace and V2 as `ffcore export` writes them, and V2 literal."""
    import torch

    from ffcore.eval.detect import DEFAULT_WEIGHTS
    from ffcore.deploy.export import export_onnx
    from ffcore.models import create_model, load_pretrained
    from ffcore.paths import shared_dir

    torch.set_num_threads(1)
    graphs = {}
    for name, deploy, label in ((RETINAFACE, True, RETINAFACE), (V2, True, V2), (V2, False, f"{V2}_literal")):
        weights = shared_dir().joinpath(*DEFAULT_WEIGHTS[name]) if name in DEFAULT_WEIGHTS else None
        # Timing does not depend on the weights' values; trained ones are used where they exist.
        model = load_pretrained(name, str(weights)) if weights is not None and weights.is_file() else create_model(name)
        path = work_dir / f"{label}.onnx"
        export_onnx(model, path, deploy=deploy, parity_sizes=((320, 320),))
        graphs[label] = str(path)
    return graphs


def worker(argv: list[str]) -> int:
    """One launch: time the graphs interleaved, print the rows as JSON."""
    from ffcore.bench import time_onnx_interleaved
    from ffcore.cli.common import parse_size

    graphs = json.loads(_option(argv, "--graphs", "{}"))
    table = time_onnx_interleaved(graphs, sizes=[parse_size(s) for s in _option(argv, "--sizes", [], many=True)],
                                  threads=[int(t) for t in _option(argv, "--threads", [], many=True)],
                                  rounds=int(_option(argv, "--rounds", "30")))
    print(table.to_json(orient="records"))
    return 0


def summarise(table):
    """Distribution over launches: per graph, size and threads the min/median/max of launch medians,
    and of the V2 / RetinaFace ratio taken launch by launch."""
    import pandas as pd

    keys = ["height", "width", "threads"]
    latency = (table.groupby(["graph", *keys])["median_ms"].agg(["min", "median", "max", "count"])
               .rename(columns=lambda c: f"{c}_ms" if c != "count" else "launches").reset_index())
    wide = table.pivot_table(index=["launch", *keys], columns="graph", values="median_ms").reset_index()
    rows = []
    for graph in (V2, f"{V2}_literal"):
        if graph not in wide or RETINAFACE not in wide:
            continue
        wide["ratio"] = wide[graph] / wide[RETINAFACE]
        for key, group in wide.groupby(keys):
            rows.append({"graph": graph, **dict(zip(keys, key)), "ratio_min": group.ratio.min(),
                         "ratio_median": group.ratio.median(), "ratio_max": group.ratio.max(),
                         "launches_v2_not_slower": int((group.ratio <= 1.0).sum()), "launches": len(group)})
    return latency, pd.DataFrame(rows)


def main(argv: list[str]) -> int:
    if "--worker" in argv:
        return worker(argv)
    import tempfile

    import pandas as pd

    from ffcore.bench import load_average

    launches = int(_option(argv, "--launches", "6"))
    rounds = _option(argv, "--rounds", "30")
    sizes = _option(argv, "--sizes", ["640x640", "480x640"], many=True)
    threads = _option(argv, "--threads", ["1", "2"], many=True)
    out_dir = Path(_option(argv, "--out-dir", "results/deploy"))
    with tempfile.TemporaryDirectory(prefix="ffcore_deploy_bench_") as tmp:
        print("exporting the graphs ...", file=sys.stderr)
        graphs = export_graphs(Path(tmp))
        frames = []
        for launch in range(launches):
            load = load_average()
            command = [sys.executable, __file__, "--worker", "--graphs", json.dumps(graphs), "--rounds", rounds,
                       "--sizes", *sizes, "--threads", *threads]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"launch {launch} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
            frame = pd.DataFrame(json.loads(done.stdout.strip().splitlines()[-1]))
            frame.insert(0, "launch", launch)
            frames.append(frame)
            print(f"launch {launch + 1}/{launches} done (load average at start {load:.2f})", file=sys.stderr)
    table = pd.concat(frames, ignore_index=True)
    latency, ratios = summarise(table)
    print(f"ONNX Runtime FP32, batch 1, {rounds} interleaved rounds per launch, {launches} launches")
    # the launches themselves add up to their thread count (the 1-minute average lags a minute)
    own = max(2.0, float(max(int(t) for t in threads))) + 0.5
    print(f"load average (1 min) during the runs: {table.loadavg_before.min():.2f} - {table.loadavg_after.max():.2f}"
          f"{f'  (above {own:g}: other work shared the CPU; rerun on an idle machine)' if table.loadavg_before.max() > own else ''}")
    print(latency.to_string(index=False, float_format="%.2f"))
    print(ratios.to_string(index=False, float_format="%.3f"))
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "deploy_latency.csv", index=False)
    print(f"per-launch rows written to {out_dir / 'deploy_latency.csv'}")
    if "--no-ladder" not in argv:
        ladder, profile = deploy_ladder(int(rounds))
        print(ladder.to_string(index=False, float_format="%.2f"))
        ladder.to_csv(out_dir / "deploy_ladder.csv", index=False)
        profile.to_csv(out_dir / "operator_profile.csv", index=False)
        print(f"ladder and operator profile written to {out_dir}")
    return 0


def deploy_ladder(rounds: int):
    """Both models' ladders timed interleaved at 640x640 (1 and 2 threads), and their deploy graphs' profile."""
    import tempfile

    import torch

    from ffcore.bench import deploy_operator_profile, export_deploy_ladder, time_deploy_ladder
    from ffcore.eval.detect import DEFAULT_WEIGHTS
    from ffcore.models import create_model, load_pretrained
    from ffcore.paths import shared_dir

    torch.set_num_threads(1)
    models = {}
    for name in (RETINAFACE, V2):
        weights = shared_dir().joinpath(*DEFAULT_WEIGHTS[name]) if name in DEFAULT_WEIGHTS else None
        models[name] = (load_pretrained(name, str(weights)) if weights is not None and weights.is_file()
                        else create_model(name)).eval()
    with tempfile.TemporaryDirectory(prefix="ffcore_deploy_ladder_") as tmp:
        print("exporting the deploy ladders ...", file=sys.stderr)
        graphs = export_deploy_ladder(models, tmp)
        print(f"timing {len(graphs)} graphs interleaved ...", file=sys.stderr)
        ladder = time_deploy_ladder(graphs, size=(640, 640), threads=(1, 2), rounds=rounds)
        profile = deploy_operator_profile(graphs, size=(640, 640), threads=1, runs=10)
    return ladder, profile


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
