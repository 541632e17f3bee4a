"""How many CPUs this process may use: the default number of training loader processes.

A batch job is given fewer CPUs than the node has (`os.cpu_count()` reports the node's), so the
count is the job's: SLURM's `SLURM_CPUS_PER_TASK` when set, else the process's CPU affinity.
"""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """CPUs this process may run on (SLURM's cpus-per-task when set, else its affinity mask)."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm:
        try:
            count = int(slurm)
        except ValueError:
            raise ValueError(f"SLURM_CPUS_PER_TASK={slurm!r} is not a whole number of CPUs") from None
        if count < 1:
            raise ValueError(f"SLURM_CPUS_PER_TASK={slurm!r}: a job needs at least one CPU")
        return count
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_loader_workers() -> int:
    """Loader processes beside the training process: one per usable CPU but the trainer's own."""
    return max(1, usable_cpus() - 1)
