"""Where a study run stands: its completion record, its configuration fingerprint, and its lock.

A run folder results/<profile>/checkpoints/<run>/ holds, beside the trainer's files
(last.pt after every epoch, best.pt, metrics.csv, train.log):

- `run.json`, the run's record, replaced atomically (write, fsync, rename):
  `{"fingerprint": {...}, "planned_epochs": N, "finished_epochs": k, "complete": bool,
  "sessions": [{"action": "trained" | "resumed", "from_epoch", "to_epoch", "host", "pid",
  "started", "ended", "wall_time_s"}], "best_sha256": ...}`. It is written when a training
  starts (complete: false) and again after the trainer has written its final checkpoint
  (complete: true, with best.pt's hash). A run is done only when that record says so: a
  best.pt alone is the first improving epoch of a run that may have stopped anywhere. A training
  that raised writes `"failed": {"error", "epoch", "last_checkpoint", ...}` instead; the next
  attempt resumes from that checkpoint and clears it.
- `lock.json`, the owner's host, process id and start time, created exclusively
  (`O_CREAT | O_EXCL`) and touched every `HEARTBEAT_S` seconds while held. A lock whose
  process is dead (same host) or whose heartbeat is older than `STALE_AFTER_S` (another
  host: a preempted cluster job) is taken over.

States (`run_state`):

    done        the record says complete and its fingerprint matches the profile's
    stale       complete (or started) with another configuration: `differences` names the fields
    partial     last.pt holds k of N epochs (resumable), or nothing finished yet
    failed      its last training raised: the record names the error and the last good checkpoint
    blocked     (set by `training.job_state`) a run it depends on failed or is blocked
    missing     nothing of the run exists
    running     (with partial / missing) another live process holds the lock

The fingerprint is what makes two trainings the same run: the model, the job kind, every
training field that changes the weights (the preset's values, epochs, image size, batch,
seed, ...) and the device type it trains on (a CPU-trained run is not the GPU run a profile asks
for), the dataset manifest's hash, and the teacher's or pruned parent's checkpoint hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ffcore.report.provenance import SYNTHETIC_MARKER, manifest_digest

RECORD = "run.json"
LOCK = "lock.json"
LAST = "last.pt"
BEST = "best.pt"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0

# Training fields that do not change what is learned: where files go, how it is shown, with how many
# loader processes. Every other field is part of a run's identity, the device as its type
# ("cuda:1" and "cuda" are the same run, "cpu" is another).
# Of the speed settings, loader workers and prefetch stay out (each sample draws its augmentation from
# [seed, epoch, index], so the batches are the same whatever process loads them), and so do the
# host-sync interval (when the losses are read, not what they are) and cuDNN autotuning (which
# algorithm computes a convolution, the same one up to rounding). Mixed precision,
# its dtype, channels-last and gradient clipping change the arithmetic or the update: they are in.
NON_IDENTITY_FIELDS = frozenset({"out_dir", "workers", "progress", "tensorboard", "log_every_steps",
                                 "stop_after_epoch", "data_root", "val_root", "skip_unreadable_images",
                                 "allow_world_size_change", "dist_timeout_minutes", "persistent_workers",
                                 "prefetch_factor", "sync_every_steps", "cudnn_benchmark",
                                 "val_batch_size"})


class StaleRunError(RuntimeError):
    """A finished run was trained with another configuration than the profile asks for now."""


class RunLockedError(RuntimeError):
    """Another live process owns the run."""


# --------------------------------------------------------------------------------- records

def read_record(run_dir: Path) -> dict | None:
    path = Path(run_dir) / RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); delete it (the run then counts as partial and "
                         f"resumes from last.pt) or retrain with --force") from exc


def write_record(run_dir: Path, record: dict) -> Path:
    """Replace run.json atomically: a reader sees the old record or the new one, never half of one."""
    path = Path(run_dir) / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{RECORD}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        handle.write(json.dumps(record, indent=1, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def data_manifest_hash(data_root: Path) -> str:
    """A hash naming the dataset a run trained on: the synthetic generator's manifest, else the training
    annotation file(s) of the WIDER layout (content, not paths, so a moved tree is the same data)."""
    root = Path(data_root)
    if (root / SYNTHETIC_MARKER).is_file():
        return manifest_digest(root / SYNTHETIC_MARKER)     # its timings left out: identical data, one hash
    candidates = sorted(p for p in (root / "train" / "label.txt",
                                    root / "wider_face_split" / "wider_face_train_bbx_gt.txt") if p.is_file())
    digest = hashlib.sha256()
    for path in candidates:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16] if candidates else "unknown"


def fingerprint(kind: str, config, data_root: Path, distillation=None, teacher: str | None = None,
                parent: str | None = None) -> dict[str, Any]:
    """What identifies a run (see the module docstring). `config` a TrainConfig, `distillation` a
    DistillConfig (its teacher weights path replaced by `teacher`, the checkpoint hash)."""
    values = {k: _plain(v) for k, v in config.to_dict().items() if k not in NON_IDENTITY_FIELDS}
    values["device"] = str(values.get("device") or "cpu").split(":")[0]
    result: dict[str, Any] = {"kind": kind, "data_manifest": data_manifest_hash(data_root),
                              **{f"train.{k}": v for k, v in sorted(values.items())}}
    if distillation is not None:
        result.update({f"distill.{k}": _plain(v) for k, v in sorted(distillation.to_dict().items())
                       if k != "teacher_weights"})
    if teacher is not None:
        result["teacher_checkpoint"] = teacher
    if parent is not None:
        result["parent_checkpoint"] = parent
    return result


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in sorted(value.items())}
    return value


def fingerprint_differences(saved: dict, expected: dict) -> dict[str, tuple[Any, Any]]:
    """{field: (saved, expected)} for every field that differs (a field only one side has included)."""
    missing = object()
    diffs = {}
    for key in sorted(set(saved) | set(expected)):
        a, b = saved.get(key, missing), expected.get(key, missing)
        if a != b:
            diffs[key] = (None if a is missing else a, None if b is missing else b)
    return diffs


def describe_differences(diffs: dict[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{key}: trained with {a!r}, profile asks {b!r}" for key, (a, b) in diffs.items())


# ---------------------------------------------------------------------------------- states

@dataclass
class RunState:
    run: str
    state: str                          # done | stale | partial | failed | blocked | missing
    planned_epochs: int
    finished_epochs: int = 0
    checkpoint: Path | None = None
    wall_time_s: float | None = None
    differences: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    holder: dict | None = None          # the live lock's owner, if any
    record: dict | None = None
    blocked_by: str | None = None       # blocked: the failed run it waits on (itself or further up)

    @property
    def done(self) -> bool:
        return self.state == "done"

    @property
    def error(self) -> str | None:
        """A failed run's error, as its record holds it."""
        failure = (self.record or {}).get("failed")
        return failure["error"] if failure else None

    def label(self) -> str:
        text = {"done": "done", "missing": "missing", "stale": "stale",
                "partial": f"partial {self.finished_epochs}/{self.planned_epochs}",
                "failed": f"failed at epoch {self.finished_epochs}/{self.planned_epochs}",
                "blocked": f"blocked by {self.blocked_by}"}[self.state]
        if self.state == "failed":
            text += f" ({self.error})"
        if self.state == "stale":
            text += " (" + ", ".join(self.differences) + ")"
        if self.holder:
            text += f", running: {describe_holder(self.holder)}"
        return text


def last_epoch(run_dir: Path) -> tuple[int, float | None]:
    """(epochs finished, wall time) according to last.pt; (0, None) without one."""
    path = Path(run_dir) / LAST
    if not path.is_file():
        return 0, None
    from ffcore.checkpoint import load_checkpoint_file

    payload = load_checkpoint_file(path)
    history = payload.get("history") or []
    wall = history[-1].get("wall_time_s") if history else None
    return int(payload.get("epoch", 0)), wall


def run_state(run_dir: Path, run: str, planned_epochs: int, expected: dict | None) -> RunState:
    """The state of one run folder against the fingerprint the profile expects now (None: a dependency
    is not complete yet, so the expected fingerprint is unknown and a finished run counts as done)."""
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    holder = live_holder(run_dir)
    if record is not None and record.get("complete"):
        diffs = fingerprint_differences(record["fingerprint"], expected) if expected is not None else {}
        best = run_dir / BEST
        state = "stale" if diffs else "done"
        if not diffs and not best.is_file():
            state, diffs = "stale", {"best.pt": ("missing", "present")}
        return RunState(run, state, planned_epochs, int(record.get("finished_epochs", 0)),
                        best if best.is_file() else None, record.get("wall_time_s"), diffs, holder, record)
    epochs, wall = last_epoch(run_dir)
    if record is not None and expected is not None:
        diffs = fingerprint_differences(record["fingerprint"], expected)
        if diffs:
            return RunState(run, "stale", planned_epochs, epochs, None, wall, diffs, holder, record)
    if epochs == 0 and record is None and not (run_dir / BEST).is_file():
        return RunState(run, "missing", planned_epochs, 0, None, None, {}, holder, record)
    if record is not None and record.get("failed") and holder is None:
        return RunState(run, "failed", planned_epochs, epochs,
                        run_dir / BEST if (run_dir / BEST).is_file() else None, wall, {}, holder, record)
    return RunState(run, "partial", planned_epochs, epochs,
                    run_dir / BEST if (run_dir / BEST).is_file() else None, wall, {}, holder, record)


def start_record(run_dir: Path, fingerprint_: dict, planned_epochs: int, action: str, from_epoch: int,
                 previous: dict | None, speed: dict | None = None) -> dict:
    """The record of a training that starts now (complete: false), keeping earlier sessions on resume.
    `speed`: the session's speed settings (loader workers and the like may change on resume)."""
    sessions = list(previous.get("sessions", [])) if previous and action == "resumed" else []
    sessions.append({"action": action, "from_epoch": from_epoch, "host": socket.gethostname(), "pid": os.getpid(),
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S"), **({"speed": speed} if speed else {}),
                     **({"slurm_job_id": os.environ["SLURM_JOB_ID"]} if os.environ.get("SLURM_JOB_ID") else {})})
    record = {"fingerprint": fingerprint_, "planned_epochs": planned_epochs, "finished_epochs": from_epoch,
              "complete": False, "sessions": sessions}
    write_record(run_dir, record)
    return record


def finish_record(run_dir: Path, record: dict, finished_epochs: int, wall_time_s: float | None,
                  extra: dict | None = None) -> dict:
    """Mark the run complete, after its final checkpoint is on disk."""
    from ffcore.checkpoint import file_sha256

    best = Path(run_dir) / BEST
    record = {**record, "finished_epochs": finished_epochs, "complete": finished_epochs >= record["planned_epochs"],
              "wall_time_s": wall_time_s, "best_sha256": file_sha256(best) if best.is_file() else None,
              **(extra or {})}
    record["sessions"][-1].update(ended=time.strftime("%Y-%m-%dT%H:%M:%S"), to_epoch=finished_epochs)
    write_record(run_dir, record)
    return record


def fail_record(run_dir: Path, record: dict, error: BaseException) -> dict:
    """Mark the run failed: the error, and the last good checkpoint (last.pt, the last epoch that
    finished) the next attempt resumes from."""
    epochs, _ = last_epoch(run_dir)
    last = Path(run_dir) / LAST
    failure = {"error": f"{type(error).__name__}: {error}"[:2000], "epoch": epochs,
               "last_checkpoint": str(last) if last.is_file() else None, "host": socket.gethostname(),
               "pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
               "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    record = {**record, "finished_epochs": epochs, "complete": False, "failed": failure}
    record["sessions"][-1].update(ended=failure["at"], to_epoch=epochs, outcome="failed")
    write_record(run_dir, record)
    return record


def how_trained(record: dict | None) -> str:
    """"trained", or "resumed from epoch k" (every resume named), from a record's sessions."""
    if not record or not record.get("sessions"):
        return "unknown (no record)"
    resumes = [s["from_epoch"] for s in record["sessions"] if s["action"] == "resumed"]
    return "trained" if not resumes else "resumed from epoch " + ", ".join(str(k) for k in resumes)


# ----------------------------------------------------------------------------------- locks

def describe_holder(holder: dict) -> str:
    return f"process {holder.get('pid')} on host {holder.get('host')} since {holder.get('started')}"


def _holder_alive(holder: dict, lock_path: Path) -> bool:
    if holder.get("host") == socket.gethostname():
        if holder.get("pid") == os.getpid():
            return True
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # another host: its process cannot be asked, its heartbeat can
    try:
        return time.time() - lock_path.stat().st_mtime < STALE_AFTER_S
    except FileNotFoundError:
        return False


def live_holder(run_dir: Path) -> dict | None:
    """The owner of the run's lock if that owner is alive, else None."""
    path = Path(run_dir) / LOCK
    try:
        holder = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:
        return None   # a lock torn by a crash mid-write has no live owner
    return holder if _holder_alive(holder, path) else None


class RunLock:
    """Exclusive ownership of a run folder (see the module docstring)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.took_over: dict | None = None    # the dead owner whose lock was taken over

    def try_acquire(self) -> dict | None:
        """Take the lock; returns None on success, or the live holder's record."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "slurm_job_id": os.environ.get("SLURM_JOB_ID")}
        for _ in range(3):
            # The lock appears whole or not at all: written beside it, then hard-linked into place (atomic and
            # exclusive). An O_EXCL file written after its creation is empty for a moment, and another
            # process reading it then would take it for a torn lock and take it over.
            staged = self.path.with_name(f"{LOCK}.{socket.gethostname()}.{os.getpid()}.{threading.get_ident()}")
            staged.write_text(json.dumps(me))
            try:
                os.link(staged, self.path)
            except FileExistsError:
                holder = live_holder(self.path.parent)
                if holder is not None and not _same_requeued_job(holder):
                    return holder
                # dead owner (or this very job, requeued): take over
                self.took_over = self._read() or {"pid": "?", "host": "?"}
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                continue
            finally:
                staged.unlink(missing_ok=True)
            self._thread = threading.Thread(target=self._heartbeat, daemon=True)
            self._thread.start()
            return None
        return self._read() or {"pid": "?", "host": "?"}

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.path)

    def acquire(self, wait: bool, poll_s: float = 10.0, say=print) -> None:
        """Take the lock, waiting for a live holder when `wait`, else raising `RunLockedError`."""
        announced = False
        while True:
            holder = self.try_acquire()
            if holder is None:
                if self.took_over:
                    say(f"{self.path.parent.name}: took over the lock of dead {describe_holder(self.took_over)}")
                return
            if not wait:
                raise RunLockedError(f"run {self.path.parent.name} is being trained by {describe_holder(holder)}")
            if not announced:
                say(f"{self.path.parent.name}: waiting for {describe_holder(holder)}, which is training it")
                announced = True
            time.sleep(poll_s)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        holder = self._read()
        if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            self.path.unlink()


def _same_requeued_job(holder: dict) -> bool:
    """A SLURM job requeued after preemption keeps its job id: its new process owns the old lock."""
    job = os.environ.get("SLURM_JOB_ID")
    return bool(job) and holder.get("slurm_job_id") == job


@contextlib.contextmanager
def locked(run_dir: Path, wait: bool, say=print) -> Iterator[RunLock]:
    lock = RunLock(run_dir)
    lock.acquire(wait=wait, say=say)
    try:
        yield lock
    finally:
        lock.release()
