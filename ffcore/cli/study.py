"""`ffcore study plan | status | train | submit`: a profile's trainings as jobs.

    ffcore study plan --profile full                       # the runs and what each waits for
    ffcore study status --profile synthetic                # done, partial k/N, missing or stale, per run
    ffcore study train --profile synthetic --workers 2     # every run, two processes side by side
    ffcore study train --profile full featherface_v1       # one run (and what it depends on)
    ffcore study submit --profile full --partition gpu --gpus-per-job 1 --time-limit 1440 --max-concurrent 8
"""

from __future__ import annotations

import argparse
import sys

PROFILE_NAMES = ("smoke", "synthetic", "synthetic_long", "synthetic_seeds", "full")   # ffcore.study.run_profiles.PROFILES (a test keeps them equal)


def _study_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", required=True, choices=PROFILE_NAMES,
                   help="the run profile (ffcore/study/run_profiles.py)")
    p.add_argument("--data", default=None, help="dataset root (default: the profile's)")
    p.add_argument("--device", default=None, choices=("cpu", "cuda"), help="training device (default: the profile's)")
    p.add_argument("--epochs", type=int, default=None, help="override every training length of the profile")
    p.add_argument("--image-size", type=int, default=None, help="override the profile's training image size")
    p.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a profile field, VALUE a Python literal (repeatable)")


def add_study(sub) -> None:
    p = sub.add_parser("study", help="a profile's trainings as jobs: plan, status, train, submit",
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
    plan.add_argument("--train-images", type=int, default=None,
                      help="training images per epoch for the estimate (default: counted in the profile's dataset "
                           "when it is there, else WIDER FACE's 12,880)")
    plan.set_defaults(handler=plan_command)

    status = actions.add_parser("status", help="print each run's state, checkpoint and wall time",
                                description="Print each run's state (done, partial k/N, missing, stale with the "
                                            "fields that differ, running with its owner), how it was trained, its "
                                            "checkpoint and wall time. Trains nothing.")
    _study_options(status)
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


def add_cluster_options(parser) -> None:
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
    from ffcore.study.jobs import ClusterOptions

    return ClusterOptions(cluster=cluster, partition=args.partition, gpus_per_job=args.gpus_per_job,
                          cpus_per_job=args.cpus_per_job, mem=args.mem, account=args.account, qos=args.qos,
                          constraint=args.constraint, time_limit_min=args.time_limit,
                          max_concurrent=args.max_concurrent, folder=folder)


def _arguments(profile, data, device, epochs, image_size, override):
    from ffcore.study.jobs import StudyArguments

    return StudyArguments(profile=profile, data_root=data, device=device, epochs=epochs, image_size=image_size,
                          overrides=parse_overrides(override))


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
                 images_per_second=None, train_images=None) -> int:
    from ffcore.study.plan import study_plan

    study = _arguments(profile, data, device, epochs, image_size, override).open(prepare_data=False)
    plan = study_plan(study.profile)
    print(f"profile {profile}: {len(plan)} runs, {sum(job.epochs for job in plan)} epochs in all")
    if images_per_second:
        train_images = train_images or _training_images(study)
        hours = {job.name: job.epochs * train_images / images_per_second / 3600 for job in plan}
        print(f"estimated at {images_per_second:g} images/s on {train_images} training images per epoch: "
              f"{sum(hours.values()):.1f} hours of training in all ({sum(hours.values()) / 24:.1f} device-days)")
    for index, job in enumerate(plan, 1):
        estimate = f"  ~{hours[job.name]:.1f} h" if images_per_second else ""
        print(f"{index:3d}. {job.describe()}{estimate}")
    return 0


WIDERFACE_TRAIN_IMAGES = 12880   # the official WIDER FACE training split


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


def status_command(action, profile, data=None, device=None, epochs=None, image_size=None, override=()) -> int:
    from ffcore.study.training import run_states_table

    study = _arguments(profile, data, device, epochs, image_size, override).open(prepare_data=False)
    table = run_states_table(study)
    _print_table(table)
    counts = table["state"].str.split(" ").str[0].str.rstrip(",").value_counts()
    print("; ".join(f"{state} {count}" for state, count in counts.items()))
    return 0


def train_command(action, profile, runs=(), workers=1, threads=None, force=False, summary=True, data=None,
                  device=None, epochs=None, image_size=None, override=()) -> int:
    from ffcore.study.run_state import StaleRunError
    from ffcore.study.jobs import plan_summary, start_workers, train_plan

    arguments = _arguments(profile, data, device, epochs, image_size, override)
    if workers > 1:
        return start_workers(arguments, workers, list(runs) or None, force=force, threads=threads)
    if threads:
        import torch

        torch.set_num_threads(threads)
    study = arguments.open(prepare_data=True)
    try:
        outcome = train_plan(study, list(runs) or None, force=force)
    except (StaleRunError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if summary:
        lines, _ = plan_summary(study, list(runs) or None)
        print("\n".join(lines), file=sys.stderr if not outcome.ok else sys.stdout)
    return 0 if outcome.ok else 1


def submit_command(action, profile, runs=(), cluster=None, folder=None, force=False, data=None, device=None,
                   epochs=None, image_size=None, override=(), **cluster_arguments) -> int:
    from ffcore.study.jobs import submit_plan

    options = cluster_options(argparse.Namespace(**cluster_arguments), cluster=cluster, folder=folder)
    jobs = submit_plan(_arguments(profile, data, device, epochs, image_size, override), options,
                       list(runs) or None, force=force)
    print(f"{len(jobs)} job(s) submitted; follow them with `ffcore study status --profile {profile}`")
    return 0
