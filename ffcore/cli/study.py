"""`ffcore study plan | status | train | submit`: a profile's trainings as jobs.

    ffcore study plan --profile full                       # the runs and what each waits for
    ffcore study status --profile synthetic                # done, partial k/N, missing or stale, per run
    ffcore study train --profile synthetic --workers 2     # every run, two processes side by side
    ffcore study train --profile full featherface_v1       # one run (and what it depends on)
    ffcore study submit --profile full --partition gpu --gpus-per-job 1 --time-limit 1440 --max-concurrent 8
    ffcore study preflight --profile full --data data/widerface --steps 2   # what would stop it, and its ETA
"""

from __future__ import annotations

import argparse
import sys

from ffcore.runs.profiles import PROFILES


def _study_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", required=True, choices=tuple(PROFILES),
                   help="the run profile (ffcore/runs/profiles.py)")
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
                                description="Submit every run that is not done as a submitit job. Each dependency "
                                            "level of the plan is a job array that starts after the levels it "
                                            "depends on succeeded; a preempted or timed-out job is requeued and "
                                            "resumes from its last.pt.")
    _study_options(submit)
    submit.add_argument("runs", nargs="*", help="run names (default: every run of the plan)")
    submit.add_argument("--cluster", default=None, choices=("slurm", "local", "debug"),
                        help="submitit's executor (default: slurm where sbatch exists, else local processes)")
    submit.add_argument("--partition", default=None, help="SLURM partition")
    submit.add_argument("--gpus-per-job", type=int, default=1, help="GPUs per job (default 1)")
    submit.add_argument("--cpus-per-job", type=int, default=8, help="CPU cores per job (default 8)")
    submit.add_argument("--time-limit", type=int, default=24 * 60, metavar="MINUTES",
                        help="time limit per job in minutes (default 1440); a job that reaches it is requeued")
    submit.add_argument("--max-concurrent", type=int, default=8,
                        help="jobs of one dependency level running at once (default 8)")
    submit.add_argument("--folder", default=None, help="submitit's logs (default results/<profile>/submitit)")
    submit.add_argument("--force", action="store_true", help="retrain the named runs (all without names)")
    submit.set_defaults(handler=submit_command)


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


def train_command(action, profile, runs=(), workers=1, threads=None, force=False, data=None, device=None,
                  epochs=None, image_size=None, override=()) -> int:
    from ffcore.runs.records import StaleRunError
    from ffcore.runs.jobs import start_workers, train_plan

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
        train_plan(study, list(runs) or None, force=force)
    except (StaleRunError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


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


def submit_command(action, profile, runs=(), cluster=None, partition=None, gpus_per_job=1, cpus_per_job=8,
                   time_limit=24 * 60, max_concurrent=8, folder=None, force=False, data=None, device=None,
                   epochs=None, image_size=None, override=()) -> int:
    from ffcore.runs.jobs import ClusterOptions, submit_plan

    options = ClusterOptions(cluster=cluster, partition=partition, gpus_per_job=gpus_per_job,
                             cpus_per_job=cpus_per_job, time_limit_min=time_limit, max_concurrent=max_concurrent,
                             folder=folder)
    arguments = _arguments(profile, data, device, epochs, image_size, override)
    refused = refuse_before_training(arguments.open(prepare_data=False), list(runs) or None, device=False)
    if refused:
        return refused
    jobs = submit_plan(arguments, options, list(runs) or None, force=force)
    print(f"{len(jobs)} job(s) submitted; follow them with `ffcore study status --profile {profile}`")
    return 0
