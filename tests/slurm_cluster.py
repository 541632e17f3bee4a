"""A real one-node SLURM cluster for the tests: Debian's slurm-wlm and munge, started as root in a
folder of its own (configuration, state, spool, logs, pid files, munge key and socket) and stopped
by the daemons' pids.

The node is sized to this machine (its cores, its memory less a margin) and has no GPU. Ports are
free ones chosen at start, so the cluster sits beside any other SLURM on the machine; the clients
find it through `SLURM_CONF`, which `environment()` sets (sbatch passes it on to the jobs).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd")
NODE = "ffcore-node"


class ClusterUnavailable(RuntimeError):
    """SLURM or munge is not installed and cannot be (not root, no sudo, no apt-get)."""


def install_slurm(say=print) -> None:
    """apt-get install slurm-wlm and munge when their daemons are missing (as root, or with sudo -n)."""
    if all(shutil.which(name) or Path("/usr/sbin", name).exists() for name in DAEMONS):
        return
    if not shutil.which("apt-get"):
        raise ClusterUnavailable(f"{', '.join(PACKAGES)} are not installed and there is no apt-get to install them")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    start = time.monotonic()
    install = [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]
    if subprocess.run(install, env=environment, capture_output=True).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-qq"], env=environment, capture_output=True, check=True)
        result = subprocess.run(install, env=environment, capture_output=True, text=True)
        if result.returncode != 0:
            raise ClusterUnavailable(f"`{' '.join(install)}` failed: {result.stderr[-2000:]}")
    say(f"installed {', '.join(PACKAGES)} in {time.monotonic() - start:.0f} s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("/proc/meminfo has no MemTotal line")


def _daemon(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class SlurmCluster:
    """`start()`, then submit with `environment()`; `stop()` ends the three daemons by their pids."""

    def __init__(self, root: Path, cpus: int | None = None, memory_mb: int | None = None):
        self.root = Path(root)
        self.cpus = cpus or os.cpu_count() or 1
        # leave the machine some memory of its own: the node offers 80 % of it
        self.memory_mb = memory_mb or int(_memory_mb() * 0.8)
        self.conf = self.root / "slurm.conf"
        self.pids: dict[str, int] = {}

    def environment(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _write_configuration(self) -> None:
        for folder in ("state", "spool", "log", "run", "munge"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        (self.root / "munge").chmod(0o711)   # munged wants its socket's folder searchable by every user
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.conf.write_text("\n".join([
            "ClusterName=ffcore-test",
            # slurmctld runs only on the host its configuration names: this one
            f"SlurmctldHost={socket.gethostname()}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={self.root / 'state'}",
            f"SlurmdSpoolDir={self.root / 'spool'}",
            f"SlurmctldPidFile={self.root / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.root / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
            # no cgroups in a container: processes tracked by their parents, no task binding or accounting
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU_Memory",
            f"DefMemPerCPU={self.memory_mb // self.cpus}",
            "ReturnToService=2",
            # a requeued job is killed at once (submitit ignores the SIGTERM that comes first), so the
            # requeue test catches a smoke training of a few seconds in its middle
            "KillWait=0",
            "SchedulerParameters=defer_batch=0",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            f"NodeName={NODE} NodeHostname={socket.gethostname()} NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.memory_mb} State=UNKNOWN",
            f"PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))

    def start(self, timeout_s: float = 60.0) -> "SlurmCluster":
        if os.geteuid() != 0:
            raise ClusterUnavailable("the test cluster's daemons run as root (slurmd starts jobs as their users)")
        install_slurm()
        self._write_configuration()
        munge = self.root / "munge"
        self._spawn("munged", [_daemon("munged"), "--force", f"--socket={self.munge_socket}",
                               f"--key-file={munge / 'munge.key'}", f"--pid-file={munge / 'munged.pid'}",
                               f"--log-file={munge / 'munged.log'}", f"--seed-file={munge / 'munged.seed'}"],
                    munge / "munged.pid", timeout_s)
        self._spawn("slurmctld", [_daemon("slurmctld"), "-f", str(self.conf)], self.root / "run" / "slurmctld.pid",
                    timeout_s)
        self._spawn("slurmd", [_daemon("slurmd"), "-f", str(self.conf), "-N", NODE], self.root / "run" / "slurmd.pid",
                    timeout_s)
        self._wait_for_idle_node(timeout_s)
        return self

    def _spawn(self, name: str, command: list[str], pid_file: Path, timeout_s: float) -> None:
        """Start a daemon (each forks into the background and writes its pid file) and keep its pid."""
        result = subprocess.run(command, env=self.environment(), capture_output=True, text=True, timeout=timeout_s)
        if result.returncode != 0:
            raise RuntimeError(f"{name} did not start ({' '.join(command)}): {result.stderr[-2000:]}"
                               f"{self._log_tail()}")
        deadline = time.monotonic() + timeout_s
        while not (pid_file.is_file() and pid_file.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} wrote no pid file {pid_file} in {timeout_s:.0f} s{self._log_tail()}")
            time.sleep(0.2)
        self.pids[name] = int(pid_file.read_text().split()[0])

    def _wait_for_idle_node(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        state = ""
        while time.monotonic() < deadline:
            result = subprocess.run(["sinfo", "--noheader", "--format=%T"], env=self.environment(),
                                    capture_output=True, text=True, timeout=30)
            state = result.stdout.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"the node is not idle after {timeout_s:.0f} s (sinfo says {state!r}){self._log_tail()}")

    def _log_tail(self) -> str:
        tails = []
        for log in (self.root / "log" / "slurmctld.log", self.root / "log" / "slurmd.log",
                    self.root / "munge" / "munged.log"):
            if log.is_file():
                tails.append(f"\n--- {log}:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        return "".join(tails)

    def cancel_all(self, timeout_s: float = 60.0) -> None:
        """Cancel every job and wait until the queue is empty (a job's processes outlive slurmd)."""
        jobs = [job["id"] for job in self.squeue()]
        if jobs:
            subprocess.run(["scancel", *jobs], env=self.environment(), capture_output=True, timeout=30)
        deadline = time.monotonic() + timeout_s
        while self.squeue() and time.monotonic() < deadline:
            time.sleep(0.5)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Cancel what is left, then SIGTERM each daemon by its pid (slurmd first, munged last) and wait
        for it to go."""
        if "slurmctld" in self.pids:
            self.cancel_all()
        for name in reversed(DAEMONS):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
            else:
                os.kill(pid, signal.SIGKILL)

    def squeue(self) -> list[dict[str, str]]:
        """The jobs SLURM holds: [{"id", "state", "name", "reason"}]."""
        result = subprocess.run(["squeue", "--noheader", "--format=%i|%T|%j|%r"], env=self.environment(),
                                capture_output=True, text=True, check=True, timeout=30)
        return [dict(zip(("id", "state", "name", "reason"), line.split("|")))
                for line in result.stdout.splitlines() if line.strip()]

    def scontrol(self, *args: str) -> str:
        return subprocess.run(["scontrol", *args], env=self.environment(), capture_output=True, text=True,
                              check=True, timeout=30).stdout
