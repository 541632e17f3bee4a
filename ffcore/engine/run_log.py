"""Run logs: a text log (`train.log`), TensorBoard scalars (`tb/`) and `metrics.csv`.

Only the main process writes. `metrics.csv` is rewritten from the whole history at every
epoch (one row per epoch; validation columns empty where no validation ran), so it is
always complete and consistent with the checkpoint after a resume.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

log = logging.getLogger("ffcore.engine")

METRICS_FILE = "metrics.csv"
LOG_FILE = "train.log"


def show_on_console() -> None:
    """Send the trainers' lines (the per-epoch line: epoch k/N, losses, images/s, ETA) to stderr, once
    per process: the console of `ffcore study train`, and so a SLURM job's log."""
    import sys

    if any(getattr(handler, "ffcore_console", False) for handler in log.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    handler.ffcore_console = True
    log.addHandler(handler)
    log.setLevel(logging.INFO)


class RunLogger:
    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool):
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self._writer = None
        self._log_file: logging.FileHandler | None = None
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # Appends (a resumed run continues its log) and flushes every line, as a run can be killed any time.
        self._log_file = logging.FileHandler(self.out_dir / LOG_FILE, mode="a", encoding="utf-8")
        self._log_file.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%Y-%m-%dT%H:%M:%S"))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:   # tensorboard is an optional dependency of torch
                self.message(f"TensorBoard logging disabled: {exc}")
            else:
                self._writer = SummaryWriter(log_dir=str(self.out_dir / "tb"))

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / METRICS_FILE

    def message(self, text: str, level: int = logging.INFO) -> None:
        """A line in train.log and in the `ffcore.engine` logger.

        train.log gets every line whatever the logger's level (the console shows what the
        application's logging configuration lets through), so the record goes to the file's
        handler directly rather than through the logger.
        """
        if not self.enabled:
            return
        log.log(level, text)
        self._log_file.handle(log.makeRecord(log.name, level, fn=LOG_FILE, lno=0, msg=text, args=(), exc_info=None))

    def scalars(self, values: dict[str, float], step: int, prefix: str) -> None:
        if self._writer is None:
            return
        for name, value in values.items():
            if value is not None:
                self._writer.add_scalar(f"{prefix}/{name}", value, step)

    def write_history(self, history: list[dict]) -> None:
        if not self.enabled or not history:
            return
        columns: list[str] = []
        for row in history:
            columns.extend(k for k in row if k not in columns)
        tmp = self.metrics_path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for row in history:
                writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
        tmp.replace(self.metrics_path)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
