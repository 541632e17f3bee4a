"""How far a study's trainings are and how long they have left, read from the run folders alone.

`ffcore study status` adds to each run's state its latest training rate (images/s of its last
epoch, metrics.csv) and its ETA: the epochs left x its own wall time per epoch (validation
included), or, before its first epoch, the wall time per epoch of a finished or running run
with the same model, recipe and kind of job. The plan's ETA spreads the work left over the
processes or jobs that train side by side, and is never shorter than the longest chain of runs
that wait for each other. Runs the trainer reported as `failed`, and the runs `blocked` behind
them, are shown with their error; they count in no ETA.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ffcore.runs.context import Study
from ffcore.runs.plan import PlannedRun, study_plan
from ffcore.runs.records import read_record

STOPPED_STATES = ("failed", "blocked")   # `state` in a run record when a run cannot go on


@dataclass
class RunProgress:
    run: str
    epochs_done: int
    planned_epochs: int
    images_per_second: float | None     # last epoch's training rate
    seconds_per_epoch: float | None     # the run's own, or a like run's (`estimated_from`)
    estimated_from: str | None = None
    stopped: str | None = None          # "failed: <error>" | "blocked: <why>" from the run record

    @property
    def seconds_left(self) -> float | None:
        if self.stopped or self.seconds_per_epoch is None:
            return None
        return max(0, self.planned_epochs - self.epochs_done) * self.seconds_per_epoch


def read_history(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _own_rate(history: list[dict]) -> tuple[float | None, float | None]:
    """(images/s of the last epoch, wall seconds per epoch so far) of a run's metrics.csv rows."""
    if not history:
        return None, None
    last = history[-1]
    rate = float(last["images_per_s"]) if last.get("images_per_s") else None
    per_epoch = float(last["wall_time_s"]) / int(last["epoch"]) if last.get("wall_time_s") else None
    return rate, per_epoch


def _stopped(record: dict | None) -> str | None:
    """"failed: ..." or "blocked: ..." when the record says the run cannot go on (read tolerantly: a
    record without a `state` is a run that is training, done or not started)."""
    if not record or record.get("state") not in STOPPED_STATES:
        return None
    why = record.get("error") or record.get("blocked_by") or record.get("reason") or ""
    if isinstance(why, (list, tuple)):
        why = ", ".join(map(str, why))
    return f"{record['state']}: {str(why).splitlines()[0][:100]}" if why else record["state"]


def plan_progress(study: Study, states, only: list[str] | None = None) -> list[RunProgress]:
    """Progress of every job of the plan; `states` is `training.run_states_table` (its `state` and
    `epochs` k/N columns: done runs have nothing left)."""
    plan = study_plan(study.profile, only)
    finished = {run: (state.startswith("done"), int(epochs.split("/")[0]))
                for run, state, epochs in zip(states["run"], states["state"], states["epochs"])}
    measured: dict[tuple, tuple[str, float]] = {}
    rows = []
    for job in plan:
        history = read_history(study.run_dir(job.name))
        rate, per_epoch = _own_rate(history)
        is_done, epochs_done = finished[job.name]
        done = job.epochs if is_done else epochs_done
        if per_epoch is not None:
            measured.setdefault(_like(job), (job.name, per_epoch))
        rows.append(RunProgress(job.name, done, job.epochs, rate, per_epoch,
                                stopped=_stopped(read_record(study.run_dir(job.name)))))
    for job, row in zip(plan, rows):
        if row.seconds_per_epoch is None and _like(job) in measured:
            row.estimated_from, row.seconds_per_epoch = measured[_like(job)]
    return rows


def _like(job: PlannedRun) -> tuple:
    """Runs that train alike, epoch for epoch: the same model, recipe and kind of job."""
    return job.model, job.preset, job.kind, job.teacher.model if job.teacher else None


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 48 * 3600 else f"{seconds / 86400:.1f} d"


def plan_eta(study: Study, progress: list[RunProgress], workers: int, only: list[str] | None = None) -> str:
    """One line: the work left, spread over `workers` side by side, bounded below by the longest chain."""
    plan = {job.name: job for job in study_plan(study.profile, only)}
    left = {row.run: row.seconds_left for row in progress}
    unknown = [row.run for row in progress if row.seconds_left is None and not row.stopped
               and row.epochs_done < row.planned_epochs]
    stopped = [row.run for row in progress if row.stopped]
    total = sum(v for v in left.values() if v)
    chain: dict[str, float] = {}
    for name, job in plan.items():   # dependency order
        chain[name] = (left.get(name) or 0.0) + max((chain[d] for d in job.depends_on if d in chain), default=0.0)
    longest = max(chain.values(), default=0.0)
    eta = max(total / max(1, workers), longest)
    line = (f"plan: {format_duration(total)} of training left for one worker; with {workers} side by side about "
            f"{format_duration(eta)}")
    if unknown:
        line += f" (without {len(unknown)} run(s) not started and with no like run measured yet)"
    if stopped:
        line += f"; {len(stopped)} run(s) failed or blocked, not counted: {', '.join(stopped)}"
    return line


def add_progress_columns(table, progress: list[RunProgress]):
    """The status table with the epoch k/N, images/s and ETA columns, and failed / blocked states."""
    by_run = {row.run: row for row in progress}
    table = table.copy()
    table["epochs"] = [f"{by_run[r].epochs_done}/{by_run[r].planned_epochs}" for r in table["run"]]
    at = list(table.columns).index("epochs") + 1    # beside the epochs, before the long columns
    table.insert(at, "images/s", [f"{by_run[r].images_per_second:.1f}" if by_run[r].images_per_second else ""
                                  for r in table["run"]])
    table.insert(at + 1, "ETA", [_eta_cell(by_run[r]) for r in table["run"]])
    table["state"] = [by_run[r].stopped or state for r, state in zip(table["run"], table["state"])]
    return table


def _eta_cell(row: RunProgress) -> str:
    if row.stopped:
        return ""
    if row.epochs_done >= row.planned_epochs:
        return "-"
    text = format_duration(row.seconds_left)
    return f"~{text} (as {row.estimated_from})" if row.estimated_from and row.seconds_left is not None else text
