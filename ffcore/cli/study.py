"""`ffcore study plan | status | train | submit | run`: a profile's trainings as jobs, then its notebooks.

    ffcore study plan --profile full                       # the runs and what each waits for
    ffcore study status --profile synthetic                # done, partial k/N, missing or stale, per run
    ffcore study train --profile synthetic --workers 2     # every run, two processes side by side
    ffcore study train --profile full featherface_v1       # one run (and what it depends on)
    ffcore study submit --profile full --partition gpu --cpus-per-job 8 --mem 32G --time-limit 1440
    ffcore study preflight --profile full --data data/widerface --steps 2   # what would stop it, and its ETA
    ffcore study run --profile smoke                       # the plan, then the five notebooks (run_all.py)
"""

from __future__ import annotations

import argparse
import sys

from ffcore.runs.profiles import PROFILES


def _study_options(p: argparse.ArgumentParser, profile_help: str | None = None) -> None:
    """The options that open a study. `profile_help` given: --profile is optional (`study run` picks one)."""
    p.add_argument("--profile", required=profile_help is None, default=None, choices=tuple(PROFILES),
                   help=profile_help or "the run profile (ffcore/runs/profiles.py)")
    p.add_argument("--data", default=None, help="dataset root (default: the profile's)")
    p.add_argument("--device", default=None, choices=("cpu", "cuda"), help="training device (default: the profile's)")
    p.add_argument("--epochs", type=int, default=None, help="override every training length of the profile")
    p.add_argument("--image-size", type=int, default=None, help="override the profile's training image size")
    p.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a profile field, VALUE a Python literal (repeatable)")


def add_study(sub) -> None:
    p = sub.add_parser("study", help="a profile's trainings as jobs: plan, status, train, submit; run the study",
                       description="The trainings of a study profile as resumable jobs. A run is done only when "
                                   "its completion record says so; an interrupted run resumes from its last.pt; a "
                                   "run trained with another configuration is stale and retrained only with --force.")
    actions = p.add_subparsers(dest="action", metavar="<action>")
    actions.required = True

    plan = actions.add_parser("plan", help="print the runs with their dependencies",
                              description="Print every run of the profile in dependency order: a distilled run "
                                          "depends on its teacher, a pruned run on its parent.")
    _study_options(plan)
    plan.add_argument("--images-per-second", type=float, default=None, metavar="RATE",
                      help="also estimate each run's training time as epochs x training images / RATE (e.g. 207, "
                           "the rate the fork's ECA-CBAM trained at on one GPU, or your own from "
                           "benchmarks/bench_gpu_throughput.py)")
    plan.add_argument("--val-images-per-second", type=float, default=None, metavar="RATE",
                      help="with --images-per-second: also count the validations during training (each run's "
                           "val_every) at RATE validation images/s (benchmarks/bench_gpu_throughput.py prints it)")
    plan.add_argument("--val-images", type=int, default=WIDERFACE_VAL_IMAGES,
                      help="validation images per pass for the estimate (default WIDER FACE's 3,226)")
    plan.add_argument("--train-images", type=int, default=None,
                      help="training images per epoch for the estimate (default: counted in the profile's dataset "
                           "when it is there, else WIDER FACE's 12,880)")
    plan.set_defaults(handler=plan_command)

    status = actions.add_parser("status", help="print each run's state, checkpoint and wall time",
                                description="Print each run's state (done, partial k/N, missing, stale with the "
                                            "fields that differ, running with its owner), how it was trained, its "
                                            "checkpoint and wall time. Trains nothing.")
    _study_options(status)
    status.add_argument("--workers", type=int, default=None, metavar="N",
                        help="trainings running side by side, for the plan's ETA (worker processes, or SLURM jobs "
                             "at once: --max-concurrent); default: the profile's train_workers")
    status.set_defaults(handler=status_command)

    train = actions.add_parser("train", help="train the given runs, or all, respecting dependencies",
                               description="Bring the given runs (and what they depend on), or every run of the "
                                           "profile, to complete: train, resume from last.pt, or reuse. Several "
                                           "processes (--workers, or several invocations) share the plan through "
                                           "per-run locks.")
    _study_options(train)
    train.add_argument("runs", nargs="*", help="run names (default: every run of the plan)")
    train.add_argument("--workers", type=int, default=1,
                       help="processes training side by side (default 1); each gets cores / workers threads")
    train.add_argument("--threads", type=int, default=None, help="torch threads of this process (default: torch's)")
    train.add_argument("--force", action="store_true", help="retrain the named runs (all without names) from scratch")
    # the workers of --workers N: their launcher prints the one summary of the whole plan
    train.add_argument("--no-summary", dest="summary", action="store_false", help=argparse.SUPPRESS)
    train.set_defaults(handler=train_command)

    preflight = actions.add_parser(
        "preflight", help="check the data, weights and device; with --steps, time every job and estimate the plan",
        description="Check what would stop the study: every listed training and validation image exists and a "
                    "sample decodes, the annotation and evaluation .mat files parse, the ImageNet backbone and "
                    "shared weights are there (naming the runs that would be dropped), the CUDA device and driver "
                    "fit torch's CUDA build. With --steps N, also train every job for two epochs of N steps and "
                    "validate it on a few images, on the real device, in a scratch folder (never "
                    "results/<profile>), and print the images/s per model and the plan's ETA.")
    _study_options(preflight)
    preflight.add_argument("runs", nargs="*", help="run names (default: every run of the plan)")
    preflight.add_argument("--steps", type=int, default=0,
                           help="also train every job for two epochs of STEPS steps and estimate the plan (0: checks only)")
    preflight.add_argument("--scratch", default=None,
                           help="where the trial trains (default results/preflight/<profile>; emptied first)")
    preflight.add_argument("--val-images", type=int, default=8, help="validation images timed per model (default 8)")
    preflight.add_argument("--no-device", action="store_true",
                           help="leave the device out of the checks (a login node that only submits has no GPU)")
    preflight.set_defaults(handler=preflight_command)
    repool = actions.add_parser("repool", help="recompute a results folder's pooled rows with the two-stage interval",
                                description="Recompute every pooled row of a results folder's seed comparisons "
                                            "from its per-seed rows with the two-stage t interval (shared image "
                                            "part bounded above; ffcore.study.repool) and write "
                                            "pooled_recomputed.csv beside its tables. Trains and evaluates nothing.")
    repool.add_argument("folders", nargs="+", help="results folders holding tables/ (e.g. results/synthetic)")
    repool.set_defaults(handler=repool_command)

    submit = actions.add_parser("submit", help="submit every run as a SLURM job through submitit",
                                description="Submit every run that is not done as a submitit job. Each job waits "
                                            "only for its own teacher's or parent's job; a failed job cancels its "
                                            "dependents; a preempted or timed-out job is requeued and resumes from "
                                            "its last.pt. Submitting again submits only what is not done, queued "
                                            "or running. Needs no GPU on the submitting node.")
    submit.add_argument("--cluster", default=None, choices=("slurm", "local", "debug"),
                        help="submitit's executor (default: slurm where sbatch exists, else local processes)")
    _study_options(submit)
    submit.add_argument("runs", nargs="*", help="run names (default: every run of the plan)")
    add_cluster_options(submit)
    submit.add_argument("--folder", default=None, help="submitit's logs (default results/<profile>/submitit)")
    submit.add_argument("--force", action="store_true", help="retrain the named runs (all without names)")
    submit.set_defaults(handler=submit_command)

    run = actions.add_parser("run", help="train the plan, then execute the five notebooks (what run_all.py runs)",
                             description=RUN_DESCRIPTION)
    add_run_options(run)
    run.set_defaults(handler=run_command)


RUN_DESCRIPTION = (
    "Train the profile's plan as jobs (--workers N processes side by side, or SLURM jobs with --launcher slurm), "
    "then execute the study notebooks (01 baseline ... 05 benchmarks) with papermill; they load what was trained "
    "and write the tables, figures and results/<profile>/summary.md. A run is reused only when its record says it "
    "finished with the profile's configuration; an interrupted or failed run resumes from its last good checkpoint.")

PROFILE_HELP = (
    "full: WIDER FACE from data/widerface, the papers' schedules, GPU; synthetic: every model trained on generated "
    "data with one CPU recipe (its measured duration: results/synthetic/summary.md); synthetic_long: the same "
    "recipe, with V1, V2 and V2 distilled also trained for 20 and 40 epochs (the training-budget curve) and the "
    "pruning control; synthetic_seeds: the same recipe with every one-part swap and V2 variant over three seeds, "
    "V2's own recipe and the WIDER FACE-teacher distillation (each about two hours; rerun the command to resume); "
    "smoke: tiny synthetic set, minutes, checks the pipeline only. Default: full when data/widerface is complete "
    "and CUDA is available, otherwise synthetic")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of `ffcore study run` and of run_all.py, its wrapper: one definition."""
    _study_options(parser, profile_help=PROFILE_HELP)
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
                             "submitit and exit; run the command again with --workers 0 once the jobs are done")
    parser.add_argument("--compare-with", default=None, metavar="REF",
                        help="after the run, print every stated verdict beside the one in REF (a results folder or a "
                             "git ref holding results/<profile>/tables) and write results/<profile>/run_comparison.csv")
    parser.add_argument("--in-place", action="store_true",
                        help="write the executed notebooks back into notebooks/ (to commit the reference run's "
                             "outputs; `make test` runs smoke copies of them under nbval)")
    add_cluster_options(parser)


def build_run_parser(prog: str = "run_all.py") -> argparse.ArgumentParser:
    """The parser of `ffcore study run`, standing alone (run_all.py)."""
    parser = argparse.ArgumentParser(prog=prog, description=RUN_DESCRIPTION)
    add_run_options(parser)
    return parser


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """The cluster options of `ffcore study submit` and `run_all.py --launcher slurm`, defined once."""
    parser.add_argument("--partition", default=None, help="SLURM partition")
    parser.add_argument("--gpus-per-job", type=int, default=None,
                        help="GPUs per job (default: 1 when the profile trains on cuda, 0 on the CPU)")
    parser.add_argument("--cpus-per-job", type=int, default=None,
                        help="CPU cores per job (default: the profile's DataLoader workers + 1)")
    parser.add_argument("--mem", default=None, help="memory per job, as SLURM's --mem (e.g. 16G; default: the "
                                                    "partition's)")
    parser.add_argument("--account", default=None, help="SLURM account to charge")
    parser.add_argument("--qos", default=None, help="SLURM quality of service")
    parser.add_argument("--constraint", default=None, help="SLURM node features the jobs need (e.g. a100)")
    parser.add_argument("--time-limit", type=int, default=24 * 60, metavar="MINUTES",
                        help="time limit per job in minutes (default 1440); a job that reaches it is requeued and "
                             "resumes from its last.pt")
    parser.add_argument("--max-concurrent", type=int, default=8,
                        help="jobs waiting on the same run (or on none) running at once (default 8)")


def cluster_options(args, cluster: str | None = None, folder: str | None = None) -> ClusterOptions:
    """ClusterOptions from the options `add_cluster_options` added to a parsed command line."""
    from ffcore.runs.jobs import ClusterOptions

    return ClusterOptions(cluster=cluster, partition=args.partition, gpus_per_job=args.gpus_per_job,
                          cpus_per_job=args.cpus_per_job, mem=args.mem, account=args.account, qos=args.qos,
                          constraint=args.constraint, time_limit_min=args.time_limit,
                          max_concurrent=args.max_concurrent, folder=folder)


def _arguments(profile, data, device, epochs, image_size, override):
    from ffcore.runs.jobs import StudyArguments

    overrides = parse_overrides(override)
    check_overrides(profile, overrides)
    return StudyArguments(profile=profile, data_root=data, device=device, epochs=epochs, image_size=image_size,
                          overrides=overrides)


def check_overrides(profile: str, overrides: dict, prog: str = "ffcore study") -> None:
    """Fail with a message, not a traceback, when an override names no profile field (the message lists
    them) or gives a field a value it cannot take."""
    from ffcore.runs.profiles import UnknownProfileFieldError, get_profile

    try:
        get_profile(profile).with_overrides(fields=overrides)
    except (UnknownProfileFieldError, ValueError) as exc:
        raise SystemExit(f"{prog}: --override: {exc}") from None


def parse_overrides(items: list[str], prog: str = "ffcore study") -> dict:
    """{"field": literal} from FIELD=VALUE strings (VALUE a Python literal; a bare word stays a string).
    Shared with run_all.py's --override; `prog` names the command in the error."""
    import ast

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"{prog}: --override {item!r} is not FIELD=VALUE")
        try:
            overrides[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key.strip()] = value
    return overrides


def _print_table(table) -> None:
    import pandas as pd

    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        print(table.to_string(index=False))


def plan_command(action, profile, data=None, device=None, epochs=None, image_size=None, override=(),
                 images_per_second=None, train_images=None, val_images_per_second=None,
                 val_images=None) -> int:
    from ffcore.runs.plan import study_plan
    from ffcore.runs.training import train_config

    study = _arguments(profile, data, device, epochs, image_size, override).open(prepare_data=False)
    plan = study_plan(study.profile)
    print(f"profile {profile}: {len(plan)} runs, {sum(job.epochs for job in plan)} epochs in all")
    if images_per_second:
        train_images = train_images or _training_images(study)
        hours = {job.name: job.epochs * train_images / images_per_second / 3600 for job in plan}
        print(f"estimated at {images_per_second:g} images/s on {train_images} training images per epoch: "
              f"{sum(hours.values()):.1f} hours of training in all ({sum(hours.values()) / 24:.1f} device-days)")
        if val_images_per_second:
            val_images = val_images or WIDERFACE_VAL_IMAGES
            passes = {job.name: train_config(study, job.name).validation_passes() for job in plan}
            for run, count in passes.items():
                hours[run] += count * val_images / val_images_per_second / 3600
            print(f"  with {sum(passes.values())} validations during training of {val_images} images at "
                  f"{val_images_per_second:g} images/s: {sum(hours.values()):.1f} hours in all "
                  f"({sum(hours.values()) / 24:.1f} device-days)")
    for index, job in enumerate(plan, 1):
        estimate = f"  ~{hours[job.name]:.1f} h" if images_per_second else ""
        print(f"{index:3d}. {job.describe()}{estimate}")
    from ffcore.runs.plan import unavailable_runs

    for run, why in unavailable_runs(study.profile).items():
        print(f"left out: {run}: {why}")
    print()
    print(_question_budget(study, images_per_second, train_images))
    return 0


def _question_budget(study, images_per_second=None, train_images=None) -> str:
    """The questions the plan answers with their cost (ffcore.study.questions), at the given rate or the
    measured GPU rate of the reference measurements."""
    from ffcore.study.questions import describe_budget, reference_measurements

    if images_per_second:
        source = "--images-per-second"
    else:
        measured = reference_measurements()["gpu_training_throughput"]
        images_per_second, source = measured["images_per_second"], measured["what"]
    return describe_budget(study.profile, images_per_second, train_images or _training_images(study), source)


def repool_command(action, folders) -> int:
    from ffcore.study.repool import write_repooled

    for folder in folders:
        out = write_repooled(folder)
        print(f"{out}")
    return 0


WIDERFACE_TRAIN_IMAGES = 12880   # the official WIDER FACE training split
WIDERFACE_VAL_IMAGES = 3226      # the official WIDER FACE validation split


def _training_images(study) -> int:
    """Training images seen per epoch: the profile's generated set, the dataset's training split, or
    WIDER FACE's official count when the data is not there; capped by max_steps_per_epoch."""
    from ffcore.data.layout import LayoutError, WiderFaceLayout

    profile = study.profile
    if profile.is_synthetic and profile.synthetic_train_images:
        images = profile.synthetic_train_images
    else:
        try:
            images = len(WiderFaceLayout.find(study.data_root, need=("train",)).train_dataset(check_images=False))
        except (LayoutError, FileNotFoundError):
            images = WIDERFACE_TRAIN_IMAGES
    if profile.max_steps_per_epoch:
        images = min(images, profile.max_steps_per_epoch * profile.batch_size)
    return images


def status_command(action, profile, data=None, device=None, epochs=None, image_size=None, override=(),
                   workers=None) -> int:
    from ffcore.runs.progress import add_progress_columns, plan_eta, plan_progress
    from ffcore.runs.training import run_states_table

    study = _arguments(profile, data, device, epochs, image_size, override).open(prepare_data=False)
    table = run_states_table(study)
    progress = plan_progress(study, table)
    table = add_progress_columns(table, progress)
    _print_table(table)
    counts = table["state"].str.split(" ").str[0].str.rstrip(",:").value_counts()
    print("; ".join(f"{state} {count}" for state, count in counts.items()))
    print(plan_eta(study, progress, workers or study.profile.train_workers))
    return 0


def train_command(action, profile, runs=(), workers=1, threads=None, force=False, summary=True, data=None,
                  device=None, epochs=None, image_size=None, override=()) -> int:
    from ffcore.runs.records import StaleRunError
    from ffcore.runs.jobs import plan_summary, start_workers, train_plan

    from ffcore.engine.run_log import show_on_console

    show_on_console()
    arguments = _arguments(profile, data, device, epochs, image_size, override)
    if workers > 1:
        return start_workers(arguments, workers, list(runs) or None, force=force, threads=threads)
    if threads:
        import torch

        torch.set_num_threads(threads)
    study = arguments.open(prepare_data=True)
    refused = refuse_before_training(study, list(runs) or None)
    if refused:
        return refused
    try:
        outcome = train_plan(study, list(runs) or None, force=force)
    except (StaleRunError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if summary:
        lines, _ = plan_summary(study, list(runs) or None)
        print("\n".join(lines), file=sys.stderr if not outcome.ok else sys.stdout)
    return 0 if outcome.ok else 1


def preflight_command(action, profile, runs=(), steps=0, scratch=None, val_images=8, no_device=False, data=None,
                      device=None, epochs=None, image_size=None, override=()) -> int:
    from ffcore.runs.preflight import run_preflight

    if no_device and steps:
        raise SystemExit("ffcore study preflight: --steps trains on the device; it cannot go with --no-device")
    study = _arguments(profile, data, device, epochs, image_size, override).open(prepare_data=False)
    return run_preflight(study, list(runs) or None, steps=steps, scratch=scratch, val_images=val_images,
                         check_device=not no_device)


def refuse_before_training(study, runs=None, device: bool = True, prog: str = "ffcore study") -> int:
    """The pre-flight's cheap checks for a WIDER FACE profile before its trainings start: 0 when they
    pass (or the profile is synthetic), else 2 with every problem printed. `device=False` for a
    submission, which needs no GPU where it is made."""
    if study.profile.is_synthetic:
        from ffcore.runs.plan import unavailable_runs

        for run, why in unavailable_runs(study.profile).items():   # said, never left out silently
            print(f"{prog}: left out of the plan: {run}: {why}", file=sys.stderr)
        return 0
    from ffcore.runs.preflight import preflight_checks

    report = preflight_checks(study, runs, device=device)
    if report.ok:
        return 0
    print(report.text(), file=sys.stderr)
    print(f"{prog}: the pre-flight found {len(report.errors)} problem(s) (lines marked ERROR); nothing was "
          f"started. `ffcore study preflight --profile {study.profile.name}` repeats these checks.", file=sys.stderr)
    return 2


def submit_command(action, profile, runs=(), cluster=None, folder=None, force=False, data=None, device=None,
                   epochs=None, image_size=None, override=(), **cluster_arguments) -> int:
    from ffcore.runs.jobs import ClusterMismatchError, submit_plan

    options = cluster_options(argparse.Namespace(**cluster_arguments), cluster=cluster, folder=folder)
    arguments = _arguments(profile, data, device, epochs, image_size, override)
    refused = refuse_before_training(arguments.open(prepare_data=False), list(runs) or None, device=False)
    if refused:
        return refused
    try:
        jobs = submit_plan(arguments, options, list(runs) or None, force=force)
    except ClusterMismatchError as exc:
        print(f"ffcore study submit: nothing submitted: {exc}", file=sys.stderr)
        return 2
    print(f"{len(jobs)} job(s) submitted; follow them with `ffcore study status --profile {profile}`")
    return 0


# ------------------------------------------------------------------------------------ study run

def notebook_parameters(args: argparse.Namespace) -> dict:
    """The papermill parameters passed to every notebook (each must exist in its `parameters` cell)."""
    from pathlib import Path

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
        params["overrides"] = notebook_overrides(args.override)
    return params


def notebook_overrides(items: list[str], prog: str = "ffcore study run") -> dict:
    """`parse_overrides`, tuples as lists: papermill writes lists into the injected cell but turns a
    tuple into its string."""
    return {key: _as_lists(value) for key, value in parse_overrides(items, prog=prog).items()}


def _as_lists(value):
    if isinstance(value, (tuple, list)):
        return [_as_lists(v) for v in value]
    return value


def default_profile(data_root=None) -> tuple[str, str]:
    """(profile, why): `full` when WIDER FACE is complete under data/widerface (or `data_root`) and
    CUDA is available, otherwise `synthetic`."""
    import torch

    from ffcore.runs.context import default_data_root
    from ffcore.runs.datasets import DatasetMissingError, check_dataset
    from ffcore.runs.profiles import get_profile

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


def run_command(action=None, prog: str = "ffcore study run", **options) -> int:
    """Train the plan (local workers), or submit it (SLURM), then execute the notebooks in order."""
    import time
    from pathlib import Path

    from ffcore.runs.notebooks import select_notebooks

    args = argparse.Namespace(**options)
    names = select_notebooks(args.only, prog=prog)
    if args.profile is None:
        args.profile, why = default_profile(Path(args.data).expanduser().resolve() if args.data else None)
        print(f"{prog}: no --profile given; running {args.profile!r}: {why}", flush=True)
        if "NOT the full study" in why:   # a notice the terminal keeps, not one line among the notebooks'
            print(f"{prog}: NOTICE: {why}", file=sys.stderr, flush=True)

    # Fail before any job or notebook starts when the profile's data is not there.
    from ffcore.runs.context import default_data_root
    from ffcore.runs.datasets import DatasetMissingError, check_dataset
    from ffcore.runs.jobs import StudyArguments
    from ffcore.runs.profiles import get_profile

    profile = get_profile(args.profile)
    data_root = Path(args.data).expanduser().resolve() if args.data else default_data_root(profile)
    try:
        check_dataset(profile, data_root)
    except DatasetMissingError as exc:
        print(f"{prog}: cannot run profile {profile.name!r}: {exc}", file=sys.stderr)
        return 2
    overrides = parse_overrides(args.override, prog=prog) if args.override else {}
    check_overrides(profile.name, overrides, prog=prog)
    arguments = StudyArguments(profile.name, data_root=str(data_root) if args.data else None, device=args.device,
                               epochs=args.epochs, image_size=args.image_size, overrides=overrides)
    # the pre-flight's cheap checks (WIDER FACE profiles); a SLURM submission needs no GPU on this node
    refused = refuse_before_training(arguments.open(prepare_data=False), device=args.launcher != "slurm", prog=prog)
    if refused:
        return refused
    if args.launcher == "slurm":
        # before any CUDA check: a login node has no GPU, the jobs check theirs when they start
        return _submit_for_notebooks(arguments, args, prog)
    device = args.device or profile.device
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print(f"{prog}: profile {profile.name!r} runs on cuda but no CUDA device is visible here; run it on a "
                  f"GPU node (or submit it from here with --launcher slurm), or pass --device cpu to train it on "
                  f"the CPU: its runs are then CPU runs, stale for a later GPU run", file=sys.stderr)
            return 2

    params = notebook_parameters(args)
    workers = profile.train_workers if args.workers is None else args.workers
    timings: list[tuple[str, str, float]] = []
    total_start = time.perf_counter()
    if workers > 0 and args.only is None:
        print(f"training the plan of profile {profile.name!r} before the notebooks "
              f"(`ffcore study status --profile {profile.name}` shows where each run stands)", flush=True)
        from ffcore.runs.jobs import start_workers

        start = time.perf_counter()
        code = start_workers(arguments, workers, force=args.force)
        training_time = time.perf_counter() - start
        timings.append((f"trainings ({workers} worker{'s' * (workers > 1)})", "ok" if not code else "FAILED",
                        training_time))
        print(f"trainings done in {training_time / 60:.1f} min", flush=True)
        if code:
            print(f"{prog}: the plan has failed or blocked runs (summary above); the notebooks need every run. "
                  f"Fix the cause and run the same command again: what is done is reused, a failed run resumes "
                  f"from its last good checkpoint", file=sys.stderr)
            return 1
        params["force"] = False        # retrained above, once: the notebooks now load
    return _run_notebooks(profile, names, params, args, timings, total_start, data_root, device)


def _run_notebooks(profile, names, params, args, timings, total_start, data_root, device) -> int:
    import time

    from papermill.exceptions import PapermillExecutionError

    from ffcore.paths import results_dir
    from ffcore.runs.notebooks import NOTEBOOKS, describe_failure, execute_notebook, notebook_dir
    from ffcore.report.summary import write_summary

    out_dir = notebook_dir() if args.in_place else results_dir() / profile.name / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"profile {profile.name}: {profile.description}", flush=True)
    print(f"data {data_root} | device {device} | force {args.force} | notebooks -> {out_dir}", flush=True)
    print("each training prints a line with the trainings left and an ETA", flush=True)
    for position, name in enumerate(names, 1):
        print(f"[{position}/{len(names)}] {name} ...", flush=True)
        start = time.perf_counter()
        try:
            execute_notebook(name, out_dir, params)
        except PapermillExecutionError as exc:
            timings.append((name, "FAILED", time.perf_counter() - start))
            _print_timings(timings, time.perf_counter() - total_start)
            print(describe_failure(name, exc), file=sys.stderr)
            print(f"  executed notebook with the traceback: {out_dir / (name + '.ipynb')}", file=sys.stderr)
            return 1
        elapsed = time.perf_counter() - start
        timings.append((name, "ok", elapsed))
        print(f"[{position}/{len(names)}] {name} done in {elapsed:.1f} s", flush=True)
    summary_path = write_summary(profile.name, wall_times=timings if names == list(NOTEBOOKS) else None)
    _print_timings(timings, time.perf_counter() - total_start)
    print(f"summary: {summary_path}", flush=True)
    if args.compare_with:
        return compare_with(profile.name, args.compare_with)
    return 0


def compare_with(profile: str, reference: str) -> int:
    """`--compare-with`: this run's stated verdicts beside REF's (ffcore.report.agreement)."""
    import pandas as pd

    from ffcore.paths import REPO_ROOT, results_dir
    from ffcore.report.agreement import compare_results, describe_agreement, tables_at

    try:
        theirs, holder = tables_at(reference, profile, REPO_ROOT)
    except FileNotFoundError as exc:
        print(f"ffcore study run: {exc}", file=sys.stderr)
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


def _submit_for_notebooks(arguments, args: argparse.Namespace, prog: str) -> int:
    """`--launcher slurm`: every run of the plan as a SLURM job; the notebooks run afterwards."""
    from ffcore.runs.jobs import submit_plan

    from ffcore.runs.jobs import ClusterMismatchError

    try:
        jobs = submit_plan(arguments, cluster_options(args, cluster="slurm"), force=args.force)
    except ClusterMismatchError as exc:
        print(f"{prog}: nothing submitted: {exc}", file=sys.stderr)
        return 2
    print(f"{len(jobs)} training job(s) submitted. Follow them with "
          f"`ffcore study status --profile {arguments.profile}`; when every run is done, run "
          f"`{prog} --profile {arguments.profile} --workers 0` for the notebooks.")
    return 0


def _print_timings(timings: list[tuple[str, str, float]], total: float) -> None:
    width = max(len(name) for name, _, _ in timings) if timings else 10
    print()
    print(f"{'notebook':<{width}}  status  wall time")
    for name, status, seconds in timings:
        print(f"{name:<{width}}  {status:<6}  {seconds:8.1f} s")
    print(f"{'total':<{width}}  {'':<6}  {total:8.1f} s ({total / 60:.1f} min)", flush=True)
