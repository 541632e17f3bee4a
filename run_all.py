#!/usr/bin/env python
"""Run the five study notebooks in order with papermill and print what each took.

    python run_all.py                       # full with WIDER FACE + CUDA, else synthetic (see results/synthetic/summary.md)
    python run_all.py --profile smoke       # tiny synthetic set, a few minutes: checks the pipeline
    python run_all.py --profile full --data data/widerface --device cuda
    python run_all.py --only 03 --force     # one notebook, retraining what it trains
    python run_all.py --profile synthetic --in-place   # refresh the committed notebooks
    python run_all.py --profile full --launcher slurm --partition gpu   # the trainings as SLURM jobs

First the profile's trainings run as jobs (`--workers N` processes side by side, see
`ffcore study train`), then the notebooks, which only load what was trained. A run is reused
only when its completion record says it finished with the profile's configuration; an
interrupted run resumes from its last.pt; a run trained with another configuration stops
the script (stale) until --force retrains it. `ffcore study status --profile P` shows where
every run stands.

Executed notebooks go to results/<profile>/notebooks/; tables to results/<profile>/tables/,
figures to thesis_figures/<profile>/, and results/<profile>/summary.md lists them all.
On a failing cell the script exits non-zero naming the notebook and the cell.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ffcore.paths import NOTEBOOK_DIR, REPO_ROOT
NOTEBOOKS = ("01_baseline", "02_v2_architecture", "03_distillation", "04_ablations", "05_benchmarks")
KERNEL = "python3"


def build_parser() -> argparse.ArgumentParser:
    from ffcore.runs.profiles import PROFILES

    parser = argparse.ArgumentParser(
        prog="run_all.py",
        description="Execute the study notebooks (01 baseline ... 05 benchmarks) with papermill for one "
                    "run profile and write their tables, figures and summary.")
    parser.add_argument("--profile", default=None, choices=tuple(PROFILES),
                        help="full: WIDER FACE from data/widerface, the papers' schedules, GPU; synthetic: every "
                             "model trained on generated data with one CPU recipe (its measured duration: results/synthetic/summary.md); "
                             "synthetic_long: the same recipe, with V1, V2 and V2 distilled also trained for 20 and 40 "
                             "epochs (the training-budget curve) and the pruning control; synthetic_seeds: the same "
                             "recipe with every one-part swap and V2 variant over three seeds, V2's own recipe and "
                             "the WIDER FACE-teacher distillation (each about two hours; rerun the command to resume); "
                             "smoke: tiny synthetic set, minutes, checks the pipeline only. Default: full when "
                             "data/widerface is complete and CUDA is available, otherwise synthetic")
    parser.add_argument("--data", default=None,
                        help="dataset root (default: data/synthetic/<profile> for the synthetic profiles, "
                             "data/widerface for full)")
    parser.add_argument("--device", default=None, choices=("cpu", "cuda"),
                        help="device for training and evaluation (default: the profile's)")
    parser.add_argument("--only", nargs="+", default=None, metavar="NN",
                        help="run only these notebooks, by number or name prefix (e.g. --only 03 05)")
    parser.add_argument("--force", action="store_true",
                        help="retrain the profile's runs from scratch even when they are complete (with --only: the "
                             "runs those notebooks own)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="train the plan's runs in N processes side by side (cores / N threads each) before the "
                             "notebooks; 0: the notebooks train one run after another themselves. Default: the "
                             "profile's train_workers")
    parser.add_argument("--launcher", default="local", choices=("local", "slurm"),
                        help="local: train here (--workers); slurm: submit every run as a SLURM job through "
                             "submitit and exit; run this script again with --workers 0 once the jobs are done")
    parser.add_argument("--compare-with", default=None, metavar="REF",
                        help="after the run, print every stated verdict beside the one in REF (a results folder or a "
                             "git ref holding results/<profile>/tables) and write results/<profile>/run_comparison.csv")
    parser.add_argument("--partition", default=None, help="SLURM partition (--launcher slurm)")
    parser.add_argument("--gpus-per-job", type=int, default=1, help="GPUs per SLURM job (default 1)")
    parser.add_argument("--time-limit", type=int, default=24 * 60, metavar="MINUTES",
                        help="time limit per SLURM job (default 1440); a job that reaches it is requeued and resumes")
    parser.add_argument("--max-concurrent", type=int, default=8,
                        help="SLURM jobs of one dependency level running at once (default 8)")
    parser.add_argument("--epochs", type=int, default=None, help="override every training length of the profile")
    parser.add_argument("--image-size", type=int, default=None, help="override the profile's training image size")
    parser.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE",
                        help="override any field of the profile (ffcore/runs/profiles.py), VALUE a Python literal, e.g. "
                             "--override max_steps_per_epoch=1 --override \"bench_backends=('torch',)\"")
    parser.add_argument("--in-place", action="store_true",
                        help="write the executed notebooks back into notebooks/ (to commit the reference run's "
                             "outputs; `make test` runs smoke copies of them under nbval)")
    return parser


def select_notebooks(only: list[str] | None) -> list[str]:
    if not only:
        return list(NOTEBOOKS)
    chosen = []
    for key in only:
        matches = [name for name in NOTEBOOKS if name.startswith(key) or name == key.removesuffix(".ipynb")]
        if not matches:
            raise SystemExit(f"run_all.py: --only {key!r} matches no notebook; choose from {', '.join(NOTEBOOKS)}")
        chosen.extend(m for m in matches if m not in chosen)
    return [name for name in NOTEBOOKS if name in chosen]


def default_profile(data_root: Path | None = None) -> tuple[str, str]:
    """(profile, why): `full` when WIDER FACE is complete under data/widerface (or `data_root`) and
    CUDA is available, otherwise `synthetic`."""
    import torch

    from ffcore.runs.profiles import get_profile
    from ffcore.runs.context import default_data_root
    from ffcore.runs.datasets import DatasetMissingError, check_dataset

    full = get_profile("full")
    root = data_root or default_data_root(full)
    try:
        check_dataset(full, root)
    except DatasetMissingError as exc:
        first = str(exc).splitlines()[0]
        return "synthetic", f"WIDER FACE is not complete at {root} ({first[:160]})"
    if not torch.cuda.is_available():
        from ffcore.runs.preflight import describe_cuda_mismatch, nvidia_driver_version

        return "synthetic", (f"WIDER FACE is at {root} but no CUDA device is usable, so NOT the full study: "
                             f"{describe_cuda_mismatch(torch.version.cuda, nvidia_driver_version())}")
    return "full", f"WIDER FACE is complete at {root} and CUDA is available"


def notebook_parameters(args: argparse.Namespace) -> dict:
    """The papermill parameters passed to every notebook (each must exist in its `parameters` cell)."""
    params = {"profile": args.profile, "force": bool(args.force)}
    if args.data is not None:
        params["data_root"] = str(Path(args.data).expanduser().resolve())
    if args.device is not None:
        params["device"] = args.device
    if args.epochs is not None:
        params["epochs"] = args.epochs
    if args.image_size is not None:
        params["image_size"] = args.image_size
    if args.override:
        params["overrides"] = parse_overrides(args.override)
        from ffcore.cli.study import check_overrides

        check_overrides(args.profile, params["overrides"], prog="run_all.py")
    return params


def parse_overrides(items: list[str]) -> dict:
    """{"field": literal} from FIELD=VALUE strings (`ffcore.cli.study.parse_overrides`), tuples as lists
    for papermill."""
    from ffcore.cli.study import parse_overrides as parse

    return {key: _as_lists(value) for key, value in parse(items, prog="run_all.py").items()}


def _as_lists(value):
    """Tuples as lists: papermill writes lists into the injected cell but turns a tuple into its string."""
    if isinstance(value, (tuple, list)):
        return [_as_lists(v) for v in value]
    return value


def describe_failure(name: str, error: Exception) -> str:
    """`notebook X failed in cell N: <first source line>` plus the exception, from papermill's error."""
    cell_index = getattr(error, "cell_index", None)
    exec_count = getattr(error, "exec_count", None)
    source = (getattr(error, "source", "") or "").strip().splitlines()
    first_line = source[0] if source else ""
    ename, evalue = getattr(error, "ename", type(error).__name__), getattr(error, "evalue", str(error))
    where = f"cell {cell_index}" if cell_index is not None else "an unknown cell"
    if exec_count is not None:
        where += f" (execution count {exec_count})"
    return f"notebook {name}.ipynb failed in {where}: {first_line}\n  {ename}: {evalue}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = select_notebooks(args.only)
    if args.profile is None:
        args.profile, why = default_profile(Path(args.data).expanduser().resolve() if args.data else None)
        print(f"run_all.py: no --profile given; running {args.profile!r}: {why}", flush=True)
        if "NOT the full study" in why:   # a notice the terminal keeps, not one line among the notebooks'
            print(f"run_all.py: NOTICE: {why}", file=sys.stderr, flush=True)

    # Fail before any notebook starts when the profile's data or device is not there.
    from ffcore.runs.profiles import get_profile
    from ffcore.runs.datasets import DatasetMissingError, check_dataset
    from ffcore.runs.context import default_data_root

    profile = get_profile(args.profile)
    data_root = Path(args.data).expanduser().resolve() if args.data else default_data_root(profile)
    try:
        check_dataset(profile, data_root)
    except DatasetMissingError as exc:
        print(f"run_all.py: cannot run profile {profile.name!r}: {exc}", file=sys.stderr)
        return 2
    device = args.device or profile.device
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print(f"run_all.py: profile {profile.name!r} runs on cuda but no CUDA device is visible; "
                  "pass --device cpu to run it on the CPU anyway", file=sys.stderr)
            return 2

    params = notebook_parameters(args)
    from ffcore.runs.jobs import StudyArguments

    arguments = StudyArguments(profile.name, data_root=str(data_root) if args.data else None, device=args.device,
                               epochs=args.epochs, image_size=args.image_size,
                               overrides=parse_overrides(args.override) if args.override else {})
    from ffcore.cli.study import refuse_before_training

    # the pre-flight's cheap checks (WIDER FACE profiles); a SLURM submission needs no GPU on this node
    refused = refuse_before_training(arguments.open(prepare_data=False), device=args.launcher != "slurm",
                                     prog="run_all.py")
    if refused:
        return refused
    if args.launcher == "slurm":
        return submit_trainings(arguments, args)
    workers = profile.train_workers if args.workers is None else args.workers
    pretrained = None
    if workers > 0 and args.only is None:
        print(f"training the plan of profile {profile.name!r} before the notebooks "
              f"(`ffcore study status --profile {profile.name}` shows where each run stands)", flush=True)
        start = time.perf_counter()
        from ffcore.runs.jobs import start_workers

        code = start_workers(arguments, workers, force=args.force)
        training_time = time.perf_counter() - start
        pretrained = (f"trainings ({workers} worker{'s' * (workers > 1)})", "ok" if not code else "FAILED",
                      training_time)
        print(f"trainings done in {training_time / 60:.1f} min", flush=True)
        if code:
            print(f"run_all.py: a training worker failed (exit code {code}); see its lines above", file=sys.stderr)
            return 1
        params["force"] = False        # retrained above, once: the notebooks now load
    from ffcore.paths import results_dir

    out_dir = NOTEBOOK_DIR if args.in_place else results_dir() / profile.name / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)

    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    print(f"profile {profile.name}: {profile.description}", flush=True)
    print(f"data {data_root} | device {device} | force {args.force} | notebooks -> {out_dir}", flush=True)
    print("each training prints a line with the trainings left and an ETA", flush=True)
    timings: list[tuple[str, str, float]] = [pretrained] if pretrained else []
    total_start = time.perf_counter() - (pretrained[2] if pretrained else 0.0)
    for position, name in enumerate(names, 1):
        print(f"[{position}/{len(names)}] {name} ...", flush=True)
        start = time.perf_counter()
        os.environ["FFCORE_NOTEBOOK"] = name   # the kernel inherits it: every sidecar names its notebook
        try:
            pm.execute_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"), str(out_dir / f"{name}.ipynb"),
                                parameters=params, kernel_name=KERNEL, cwd=str(NOTEBOOK_DIR),
                                progress_bar=False, log_output=False)
        except PapermillExecutionError as exc:
            timings.append((name, "FAILED", time.perf_counter() - start))
            _print_summary(timings, time.perf_counter() - total_start)
            print(describe_failure(name, exc), file=sys.stderr)
            print(f"  executed notebook with the traceback: {out_dir / (name + '.ipynb')}", file=sys.stderr)
            return 1
        elapsed = time.perf_counter() - start
        timings.append((name, "ok", elapsed))
        print(f"[{position}/{len(names)}] {name} done in {elapsed:.1f} s", flush=True)

    from ffcore.report.summary import write_summary

    summary_path = write_summary(profile.name, wall_times=timings if names == list(NOTEBOOKS) else None)
    _print_summary(timings, time.perf_counter() - total_start)
    print(f"summary: {summary_path}", flush=True)
    if args.compare_with:
        return compare_with(profile.name, args.compare_with)
    return 0


def compare_with(profile: str, reference: str) -> int:
    """`--compare-with`: this run's stated verdicts beside REF's (ffcore.report.agreement)."""
    import pandas as pd

    from ffcore.paths import results_dir
    from ffcore.report.agreement import compare_results, describe_agreement, tables_at

    try:
        theirs, holder = tables_at(reference, profile, REPO_ROOT)
    except FileNotFoundError as exc:
        print(f"run_all.py: {exc}", file=sys.stderr)
        return 2
    table = compare_results(results_dir() / profile / "tables", theirs)
    out = results_dir() / profile / "run_comparison.csv"
    table.rename(columns=lambda c: c.replace(" A", " this run").replace(" B", f" {reference}")).to_csv(out, index=False)
    with pd.option_context("display.width", 200, "display.max_rows", 500, "display.max_colwidth", 60):
        print(table[["table", "comparison", "setting", "verdict A", "verdict B", "same direction",
                     "intervals overlap", "agree"]].to_string(index=False))
    print(f"{describe_agreement(table)} (A: this run, B: {reference}); written to {out}")
    if holder is not None:
        holder.cleanup()
    return 0


def submit_trainings(arguments, args: argparse.Namespace) -> int:
    """`--launcher slurm`: every run of the plan as a submitit job; the notebooks run afterwards."""
    from ffcore.runs.jobs import ClusterOptions, submit_plan

    options = ClusterOptions(cluster="slurm", partition=args.partition, gpus_per_job=args.gpus_per_job,
                             time_limit_min=args.time_limit, max_concurrent=args.max_concurrent)
    jobs = submit_plan(arguments, options, force=args.force)
    print(f"{len(jobs)} training job(s) submitted. Follow them with `ffcore study status --profile {arguments.profile}`; "
          f"when every run is done, run `python run_all.py --profile {arguments.profile} --workers 0` for the notebooks.")
    return 0


def _print_summary(timings: list[tuple[str, str, float]], total: float) -> None:
    width = max(len(name) for name, _, _ in timings) if timings else 10
    print()
    print(f"{'notebook':<{width}}  status  wall time")
    for name, status, seconds in timings:
        print(f"{name:<{width}}  {status:<6}  {seconds:8.1f} s")
    print(f"{'total':<{width}}  {'':<6}  {total:8.1f} s ({total / 60:.1f} min)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
