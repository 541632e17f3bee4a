"""The study's trainings as jobs: local worker processes, or SLURM jobs through submitit.

Two levels of parallelism, as in the field's codebases: one training across GPUs stays
`torchrun` DDP (`ffcore train` / `ffcore distill`); many independent trainings run side by
side, which for models of 0.26-0.6 M parameters beats spreading one run over devices.

- `train_plan`: one process works through the plan in dependency order, taking every run it
  can own (`records.RunLock`) and skipping the ones another process holds. N such processes
  started together (`start_workers`, `run_all.py --workers N`, `ffcore study train --workers N`)
  share the plan through the run locks alone: nothing assigns runs to them.
  A run that fails is recorded as failed, its dependents are blocked, and the other runs go on.
- `submit_plan`: every run that is not done becomes a submitit job (`RunJob`) that waits
  (`afterok`) only for its own teacher's or parent's job. A preempted or timed-out job is
  requeued by submitit's checkpoint hook and resumes from the run's last.pt; a failed one
  cancels its dependents (`--kill-on-invalid-dep=yes`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ffcore.runs.context import Study, open_study
from ffcore.runs.plan import PlannedRun, dependency_depths, study_plan
from ffcore.runs.records import RunLockedError, StaleRunError, live_holder, read_record
from ffcore.runs.training import clear_run, ensure_run

DEPENDENCY_POLL_S = 15.0


def _complete(study: Study, run: str) -> bool:
    record = read_record(study.run_dir(run))
    return bool(record and record.get("complete"))


@dataclass
class PlanOutcome:
    """What one pass over the plan did: the runs this process handled, the runs that failed (with
    their errors) and the runs left blocked behind a failure (with the failed run they wait on)."""

    handled: list[tuple[str, str]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


def train_plan(study: Study, runs: list[str] | None = None, force: bool = False, say=print,
               poll_s: float = DEPENDENCY_POLL_S) -> PlanOutcome:
    """Bring every run of the plan (or `runs` and their dependencies) to complete; returns what this
    process did: [(run, "trained" | "resumed from epoch k" | "reused")], and the failed and blocked runs.

    A run whose training raises is recorded as failed (`run_state.fail_record`); the runs that depend
    on it are blocked, and every other run goes on. Another process's failure during this pass blocks
    the same way; one from an earlier pass is retried, from its last good checkpoint.
    `force` retrains the named `runs` (every run without names) once, before anything else."""
    from ffcore.runs.training import failed_dependency

    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    plan = study_plan(study.profile, runs)
    if force:
        clear_runs(study, [job for job in plan if not runs or job.name in runs], say=say)
    pending = list(plan)
    outcome = PlanOutcome()
    waiting_said: set[str] = set()
    while pending:
        taken = None
        for job in pending:
            blocker = (next((dep for dep in job.depends_on if dep in outcome.failed or dep in outcome.blocked), None)
                       or failed_dependency(study, job, since=started))
            if blocker:
                blocker = outcome.blocked.get(blocker, blocker)
                outcome.blocked[job.name] = blocker
                say(f"{job.name}: blocked, {blocker} failed")
                taken = job
                break
            if not all(_complete(study, dep) for dep in job.depends_on):
                continue
            try:
                result = ensure_run(study, job.name, force=False, wait=False)
            except RunLockedError:
                continue      # another process is training it
            except StaleRunError:
                raise         # a configuration to settle (--force), not a training that failed
            except Exception as error:   # recorded in the run's run.json: the plan goes on without it
                outcome.failed[job.name] = f"{type(error).__name__}: {error}"
                say(f"{job.name}: FAILED, {outcome.failed[job.name]}; its dependents are blocked, the other "
                    f"runs go on")
                taken = job
                break
            taken = job
            outcome.handled.append((job.name, result))
            say(f"{job.name}: {result}")
            break             # back to the top: the plan's order first
        if taken is not None:
            pending.remove(taken)
            continue
        if not any(live_holder(study.run_dir(job.name)) or _waits_on_held(study, job) for job in pending):
            stuck = ", ".join(job.name for job in pending)
            raise RuntimeError(f"runs {stuck} can neither be trained nor waited for: a dependency failed? "
                               f"See `ffcore study status --profile {study.profile.name}`")
        for job in pending:
            if job.name not in waiting_said:
                holder = live_holder(study.run_dir(job.name))
                say(f"{job.name}: " + (f"held by process {holder['pid']} on {holder['host']}" if holder
                                       else "waiting for " + ", ".join(d for d in job.depends_on
                                                                       if not _complete(study, d))))
                waiting_said.add(job.name)
        time.sleep(poll_s)
    return outcome


def plan_summary(study: Study, runs: list[str] | None = None) -> tuple[list[str], bool]:
    """(lines, every run done): the plan's runs counted by state, then each failed run with its error
    and last good checkpoint, and each blocked run with the failed run it waits on. Read from the run
    records, so it covers every worker or cluster job that trained the plan."""
    from ffcore.runs.training import job_state

    states = [job_state(study, job) for job in study_plan(study.profile, runs)]
    counts: dict[str, int] = {}
    for state in states:
        counts[state.state] = counts.get(state.state, 0) + 1
    lines = [f"profile {study.profile.name}: {len(states)} runs, "
             + ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))]
    for state in states:
        if state.state == "failed":
            last = (state.record or {}).get("failed", {}).get("last_checkpoint")
            lines.append(f"  FAILED  {state.run} at epoch {state.finished_epochs}/{state.planned_epochs}: "
                         f"{state.error}" + (f" (last good checkpoint {last})" if last else " (no checkpoint yet)"))
    for state in states:
        if state.state == "blocked":
            lines.append(f"  BLOCKED {state.run}: waits on {state.blocked_by}, which failed")
    if counts.get("failed") or counts.get("blocked"):
        lines.append(f"  fix the failure, then run the same command again: failed runs resume from their last "
                     f"good checkpoint (`ffcore study status --profile {study.profile.name}`)")
    return lines, all(state.done for state in states)


def _waits_on_held(study: Study, job: PlannedRun) -> bool:
    return any(not _complete(study, dep) and live_holder(study.run_dir(dep)) for dep in job.depends_on)


def clear_runs(study: Study, jobs: list[PlannedRun], say=print) -> None:
    """Delete the runs' records and checkpoints (under their locks) so they train from scratch."""
    from ffcore.runs.records import locked

    for job in jobs:
        run_dir = study.run_dir(job.name)
        if not run_dir.exists():
            continue
        with locked(run_dir, wait=True, say=say):
            clear_run(study, job)
        say(f"{job.name}: cleared for retraining (--force)")


# ------------------------------------------------------------------------------ local workers

@dataclass
class StudyArguments:
    """How to open the same study in another process (the command line's view of `open_study`)."""

    profile: str
    data_root: str | None = None
    device: str | None = None
    epochs: int | None = None
    image_size: int | None = None
    overrides: dict = field(default_factory=dict)

    def open(self, prepare_data: bool = True) -> Study:
        return open_study(self.profile, data_root=self.data_root, device=self.device, epochs=self.epochs,
                          image_size=self.image_size, overrides=self.overrides or None, prepare_data=prepare_data)

    def command_line(self) -> list[str]:
        args = ["--profile", self.profile]
        if self.data_root:
            args += ["--data", str(self.data_root)]
        if self.device:
            args += ["--device", self.device]
        if self.epochs is not None:
            args += ["--epochs", str(self.epochs)]
        if self.image_size is not None:
            args += ["--image-size", str(self.image_size)]
        for key, value in (self.overrides or {}).items():
            args += ["--override", f"{key}={value!r}"]
        return args


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def start_workers(arguments: StudyArguments, workers: int, runs: list[str] | None = None, force: bool = False,
                  threads: int | None = None, say=print) -> int:
    """Run `ffcore study train` in `workers` processes of `threads` threads each and wait for them,
    then print the plan's summary (failed and blocked runs named); returns 0, or the first non-zero
    exit code (a worker whose plan had a failure exits 1). The dataset is prepared (and `force`
    applied) here, once, before the workers start."""
    study = arguments.open(prepare_data=True)
    if force:
        plan = study_plan(study.profile, runs)
        clear_runs(study, [job for job in plan if not runs or job.name in runs], say=say)
    threads = threads or threads_per_worker(workers)
    command = [sys.executable, "-m", "ffcore", "study", "train", *arguments.command_line(),
               "--threads", str(threads), "--no-summary", *(runs or [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    say(f"training profile {arguments.profile}'s plan in {workers} process(es) of {threads} thread(s) each")
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  bufsize=1, preexec_fn=_die_with_parent) for _ in range(workers)]
    relays = [threading.Thread(target=_relay, args=(process, f"[worker {i + 1}] ", say), daemon=True)
              for i, process in enumerate(processes)]
    for relay in relays:
        relay.start()
    codes = [process.wait() for process in processes]
    for relay in relays:
        relay.join()
    lines, _ = plan_summary(study, runs)
    for line in lines:
        say(line)
    failed = [code for code in codes if code]
    return failed[0] if failed else 0


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM when the launching process dies (a killed run_all.py leaves no
    orphan training on; the run it held resumes from last.pt next time)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG


def _relay(process: subprocess.Popen, prefix: str, say) -> None:
    for line in process.stdout:
        say(prefix + line.rstrip("\n"))


# ---------------------------------------------------------------------------------- submitit

class RunJob:
    """One run as a cluster job: waits for its dependencies, then trains, resumes or reuses the run.

    submitit calls `checkpoint` when SLURM preempts the job or its time limit comes: the job is
    requeued as it was, and the new attempt resumes from the run's last.pt (the run's lock
    passes to the requeued job, which keeps its SLURM job id)."""

    def __init__(self, arguments: StudyArguments, run: str, dependency_timeout_s: float = 7 * 24 * 3600):
        self.arguments = arguments
        self.run = run
        self.dependency_timeout_s = dependency_timeout_s

    def __call__(self) -> str:
        from ffcore.engine.run_log import show_on_console

        show_on_console()   # the per-epoch lines go to the job's log
        from ffcore.runs.training import failed_dependency

        _use_allotted_cores()
        study = self.arguments.open(prepare_data=False)
        job = next(j for j in study_plan(study.profile, [self.run]) if j.name == self.run)
        deadline = time.monotonic() + self.dependency_timeout_s
        # SLURM's afterok already holds; a local executor has no dependencies, so the job waits itself
        while not all(_complete(study, dep) for dep in job.depends_on):
            blocker = failed_dependency(study, job)
            if blocker:
                raise RuntimeError(f"{self.run}: blocked, {blocker} failed (see `ffcore study status --profile "
                                   f"{study.profile.name}`)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.run}: dependencies {', '.join(job.depends_on)} not complete after "
                                   f"{self.dependency_timeout_s:.0f} s")
            time.sleep(DEPENDENCY_POLL_S)
        return ensure_run(study, self.run, force=False, wait=True)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def _use_allotted_cores() -> None:
    """torch's threads = the cores SLURM gave the job (torch would take every core of the node)."""
    cores = os.environ.get("SLURM_CPUS_PER_TASK")
    if cores:
        import torch

        torch.set_num_threads(int(cores))


@dataclass(frozen=True)
class ClusterOptions:
    """What each job asks of the cluster. None leaves a resource to the defaults below or the cluster's."""

    cluster: str | None = None        # None: SLURM when sbatch is there, else local; "slurm" | "local" | "debug"
    partition: str | None = None
    gpus_per_job: int | None = None   # None: 1 when the study trains on cuda, 0 on the CPU
    cpus_per_job: int | None = None   # None: the training's DataLoader processes + 1
    mem: str | None = None            # SLURM's --mem, e.g. "16G" (None: the partition's default)
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time_limit_min: int = 24 * 60
    max_concurrent: int = 8           # jobs of one array (the runs waiting on the same job) running at once
    folder: str | None = None         # submitit's logs and pickles (default results/<profile>/submitit)

    def resources(self, study: Study) -> tuple[int, int]:
        """(GPUs, CPU cores) per job for this study."""
        gpus = self.gpus_per_job if self.gpus_per_job is not None else int(study.device.startswith("cuda"))
        cpus = self.cpus_per_job if self.cpus_per_job is not None else study.profile.workers + 1
        return gpus, cpus


SUBMITTED = "submitted.json"    # {run: SLURM job id} of the last submission, in submitit's folder


def submit_plan(arguments: StudyArguments, options: ClusterOptions, runs: list[str] | None = None,
                force: bool = False, say=print) -> list:
    """Submit every run that is not done as a submitit job; returns the jobs.

    Each job waits (SLURM `afterok`, `--kill-on-invalid-dep=yes`) only for the job of its own teacher
    or parent, when that run is not done yet: a failed job's dependents are cancelled by SLURM and show
    as blocked, every other job goes on. Runs waiting on the same job form one job array (at most
    `max_concurrent` of it at once). A run whose job of the previous submission is still queued or
    running is not submitted again; its dependents wait for that job. Nothing here needs a GPU: the
    jobs check theirs when they start."""
    import submitit

    from ffcore.runs.training import job_state

    study = arguments.open(prepare_data=True)    # generate / check the data once, before any job
    plan = study_plan(study.profile, runs)
    if force:
        clear_runs(study, [job for job in plan if not runs or job.name in runs], say=say)
    todo = [job for job in plan if not job_state(study, job).done]
    if not todo:
        say("every run of the plan is done; nothing to submit")
        return []
    folder = Path(options.folder) if options.folder else study.results_root / "submitit"
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=options.cluster)
    gpus, cpus = options.resources(study)
    if executor.cluster == "slurm":
        check_cluster_fits(gpus, cpus, options.partition)
    queued = _still_queued(folder) if executor.cluster == "slurm" else {}
    code_root = Path(__file__).resolve().parents[2]
    executor.update_parameters(
        name=f"ffcore-{study.profile.name}", timeout_min=options.time_limit_min, cpus_per_task=cpus,
        tasks_per_node=1, nodes=1, slurm_array_parallelism=options.max_concurrent,
        # the jobs run this interpreter on this code tree, whatever the job's shell finds first
        slurm_setup=[f"export PYTHONPATH={code_root}${{PYTHONPATH:+:$PYTHONPATH}}"],
        **({"gpus_per_node": gpus} if gpus else {}),
        **{f"slurm_{key}": value for key, value in (("partition", options.partition), ("mem", options.mem),
                                                     ("account", options.account), ("qos", options.qos),
                                                     ("constraint", options.constraint)) if value})
    job_ids: dict[str, str] = {}
    for job in todo:
        if job.name in queued:
            job_ids[job.name] = queued[job.name]
            say(f"{job.name}: job {queued[job.name]} of the last submission is still queued or running; "
                f"not submitted again")
    todo_names = {job.name for job in todo}
    submitted = []
    left = [job for job in todo if job.name not in job_ids]
    while left:
        # the runs whose teacher or parent (when not done) has a job id now, grouped by that job
        ready = [job for job in left if all(dep in job_ids for dep in job.depends_on if dep in todo_names)]
        groups: dict[tuple[str, ...], list[PlannedRun]] = {}
        for job in ready:
            waits_on = tuple(sorted({job_ids[dep] for dep in job.depends_on if dep in todo_names}))
            groups.setdefault(waits_on, []).append(job)
        for waits_on, group in groups.items():
            extra = {"dependency": "afterok:" + ":".join(waits_on), "kill-on-invalid-dep": "yes"} if waits_on else {}
            executor.update_parameters(slurm_additional_parameters=extra)
            with executor.batch():
                handles = [executor.submit(RunJob(arguments, job.name)) for job in group]
            for job, handle in zip(group, handles):
                job_ids[job.name] = str(handle.job_id)
                say(f"submitted {job.name} as job {handle.job_id}" + (f" after {extra['dependency']}" if extra else ""))
            submitted += handles
        left = [job for job in left if job.name not in job_ids]
    if executor.cluster == "slurm":
        _write_submitted(folder, {**queued, **job_ids})   # with what an earlier, narrower submission queued
    say(f"{len(submitted)} job(s) asking {gpus} GPU(s) and {cpus} CPU core(s) each"
        + (f", {options.mem} of memory" if options.mem else ""))
    return submitted


class ClusterMismatchError(RuntimeError):
    """The jobs ask for what no node of the partition has."""


def check_cluster_fits(gpus: int, cpus: int, partition: str | None) -> None:
    """Refuse what no node of the partition can run: SLURM would accept the jobs and keep them pending
    forever (Reason=PartitionConfig), or reject a GPU request on a cluster without GPUs."""
    command = ["sinfo", "--noheader", "--format=%c %G"] + (["--partition", partition] if partition else [])
    lines = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout.split("\n")
    nodes = [line.split(maxsplit=1) for line in lines if line.strip()]
    if not nodes:
        raise ClusterMismatchError(f"`{' '.join(command)}` lists no node: is the partition {partition!r} right?")
    most_cpus = max(int(node[0].rstrip("+")) for node in nodes)
    where = f"partition {partition}" if partition else "the default partition"
    if cpus > most_cpus:
        raise ClusterMismatchError(f"each job asks {cpus} CPU cores but the largest node of {where} has {most_cpus}; "
                           f"pass --cpus-per-job {most_cpus} (or fewer)")
    if gpus and not any("gpu" in (node[1] if len(node) > 1 else "") for node in nodes):
        raise ClusterMismatchError(f"each job asks {gpus} GPU(s) but no node of {where} has a GPU (sinfo's GRES "
                           f"column); pass --partition with GPUs, or --gpus-per-job 0 with --device cpu")


def _still_queued(folder: Path) -> dict[str, str]:
    """{run: job id} of the last submission's jobs that SLURM still holds as pending or running."""
    path = folder / SUBMITTED
    if not path.is_file():
        return {}
    previous = json.loads(path.read_text())
    if not previous:
        return {}
    # --array: one line per array task (pending tasks are otherwise folded into one "5_[0-1]" line)
    listing = subprocess.run(["squeue", "--noheader", "--array", "--format=%i %T", "--jobs",
                              ",".join(previous.values())], capture_output=True, text=True, timeout=60)
    # squeue fails on a list whose jobs have all left the queue: then none is queued
    alive = {line.split()[0] for line in listing.stdout.splitlines()
             if line.split() and line.split()[1] in ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "SUSPENDED")}
    return {run: job for run, job in previous.items() if job in alive}


def _write_submitted(folder: Path, job_ids: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{SUBMITTED}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(job_ids, indent=1, sort_keys=True) + "\n")
    tmp.replace(folder / SUBMITTED)
