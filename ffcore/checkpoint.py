"""ffcore's checkpoint file format: a dict that carries everything needed to rebuild the model.

Keys: `format` ("ffcore-checkpoint"), `format_version`, `model_name`, `model_overrides`,
`state_dict`, and, when written by the trainer, `train_config`, `epoch`, `optimizer`,
`scheduler`, `scaler`, `metrics`, `best_metric`, `git_commit`, `created`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = "ffcore-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, unreadable or not for the model asked for."""


def is_ffcore_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Write atomically (temporary file + rename) so an interrupted save never leaves a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load any checkpoint file (ffcore's or an original implementation's) with a clear error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc


def file_sha256(path: str | Path, length: int = 12) -> str:
    """Short SHA-256 of a file, used to name checkpoints in provenance records."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]
