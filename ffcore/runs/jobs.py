"""The study's trainings as jobs: local worker processes, or SLURM jobs through submitit.

Two levels of parallelism, as in the field's codebases: one training across GPUs stays
`torchrun` DDP (`ffcore train` / `ffcore distill`); many independent trainings run side by
side, which for models of 0.26-0.6 M parameters beats spreading one run over devices.

- `train_plan`: one process works through the plan in dependency order, taking every run it
  can own (`records.RunLock`) and skipping the ones another process holds. N such processes
  started together (`start_workers`, `run_all.py --workers N`, `ffcore study train --workers N`)
  share the plan through the run locks alone: nothing assigns runs to them.
- `submit_plan`: every run becomes a submitit job (`RunJob`), the plan's dependency levels
  becoming SLURM job arrays that wait (`afterok`) for the levels before them. A preempted or
  timed-out job is requeued by submitit's checkpoint hook and resumes from the run's last.pt.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ffcore.runs.context import Study, open_study
from ffcore.runs.plan import PlannedRun, dependency_depths, study_plan
from ffcore.runs.records import RunLockedError, live_holder, read_record
from ffcore.runs.training import clear_run, ensure_run

DEPENDENCY_POLL_S = 15.0


def _complete(study: Study, run: str) -> bool:
    record = read_record(study.run_dir(run))
    return bool(record and record.get("complete"))


def train_plan(study: Study, runs: list[str] | None = None, force: bool = False, say=print,
               poll_s: float = DEPENDENCY_POLL_S) -> list[tuple[str, str]]:
    """Bring every run of the plan (or `runs` and their dependencies) to complete; returns
    [(run, "trained" | "resumed from epoch k" | "reused")] for the runs this process handled.

    `force` retrains the named `runs` (every run without names) once, before anything else."""
    plan = study_plan(study.profile, runs)
    if force:
        clear_runs(study, [job for job in plan if not runs or job.name in runs], say=say)
    pending = list(plan)
    done: list[tuple[str, str]] = []
    waiting_said: set[str] = set()
    while pending:
        taken = None
        for job in pending:
            if not all(_complete(study, dep) for dep in job.depends_on):
                continue
            try:
                outcome = ensure_run(study, job.name, force=False, wait=False)
            except RunLockedError:
                continue      # another process is training it
            taken = job
            done.append((job.name, outcome))
            say(f"{job.name}: {outcome}")
            break             # back to the top: the plan's order first
        if taken is not None:
            pending.remove(taken)
            continue
        if not any(live_holder(study.run_dir(job.name)) or _waits_on_held(study, job) for job in pending):
            blocked = ", ".join(job.name for job in pending)
            raise RuntimeError(f"runs {blocked} can neither be trained nor waited for: a dependency failed? "
                               f"See `ffcore study status --profile {study.profile.name}`")
        for job in pending:
            if job.name not in waiting_said:
                holder = live_holder(study.run_dir(job.name))
                say(f"{job.name}: " + (f"held by process {holder['pid']} on {holder['host']}" if holder
                                       else "waiting for " + ", ".join(d for d in job.depends_on
                                                                       if not _complete(study, d))))
                waiting_said.add(job.name)
        time.sleep(poll_s)
    return done


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
    """Run `ffcore study train` in `workers` processes of `threads` threads each and wait for them;
    returns 0, or the first non-zero exit code. The dataset is prepared (and `force` applied) here,
    once, before the workers start."""
    study = arguments.open(prepare_data=True)
    if force:
        plan = study_plan(study.profile, runs)
        clear_runs(study, [job for job in plan if not runs or job.name in runs], say=say)
    threads = threads or threads_per_worker(workers)
    command = [sys.executable, "-m", "ffcore", "study", "train", *arguments.command_line(),
               "--threads", str(threads), *(runs or [])]
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
        study = self.arguments.open(prepare_data=False)
        job = next(j for j in study_plan(study.profile, [self.run]) if j.name == self.run)
        deadline = time.monotonic() + self.dependency_timeout_s
        # SLURM's afterok already holds; a local executor has no dependencies, so the job waits itself
        while not all(_complete(study, dep) for dep in job.depends_on):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.run}: dependencies {', '.join(job.depends_on)} not complete after "
                                   f"{self.dependency_timeout_s:.0f} s")
            time.sleep(DEPENDENCY_POLL_S)
        return ensure_run(study, self.run, force=False, wait=True)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


@dataclass(frozen=True)
class ClusterOptions:
    cluster: str | None = None        # None: SLURM when sbatch is there, else local; "slurm" | "local" | "debug"
    partition: str | None = None
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    time_limit_min: int = 24 * 60
    max_concurrent: int = 8           # jobs of one dependency level running at once (SLURM array parallelism)
    folder: str | None = None         # submitit's logs and pickles (default results/<profile>/submitit)


def submit_plan(arguments: StudyArguments, options: ClusterOptions, runs: list[str] | None = None,
                force: bool = False, say=print) -> list:
    """Submit every run that is not done as a submitit job; returns the jobs. Runs of one dependency
    level form one job array (at most `max_concurrent` at once) that starts after the levels it
    depends on succeeded (SLURM `afterok`)."""
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
    executor.update_parameters(name=f"ffcore-{study.profile.name}", timeout_min=options.time_limit_min,
                               gpus_per_node=options.gpus_per_job, cpus_per_task=options.cpus_per_job,
                               tasks_per_node=1, nodes=1, slurm_array_parallelism=options.max_concurrent,
                               **({"slurm_partition": options.partition} if options.partition else {}))
    depths = dependency_depths(plan)
    jobs, submitted_ids = [], []
    for level in sorted({depths[job.name] for job in todo}):
        wave = [job for job in todo if depths[job.name] == level]
        extra = {"dependency": "afterok:" + ":".join(submitted_ids)} if submitted_ids else {}
        executor.update_parameters(slurm_additional_parameters=extra)
        with executor.batch():
            wave_jobs = [executor.submit(RunJob(arguments, job.name)) for job in wave]
        for job, handle in zip(wave, wave_jobs):
            say(f"submitted {job.name} as job {handle.job_id}" + (f" after {extra['dependency']}" if extra else ""))
        jobs += wave_jobs
        submitted_ids += sorted({str(handle.job_id).split("_")[0] for handle in wave_jobs})
    return jobs
