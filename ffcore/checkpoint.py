"""ffcore's checkpoint file format: a dict that carries everything needed to rebuild the model.

Keys: `format` ("ffcore-checkpoint"), `format_version`, `model_name`, `model_overrides`,
`state_dict`, and, when written by the trainer, `train_config`, `epoch`, `optimizer`,
`scheduler`, `scaler`, `metrics`, `best_metric`, `git_commit`, `created`.

Every file is read with PyTorch's restricted unpickler (`torch.load(..., weights_only=True)`):
tensors, numbers, strings and plain containers only. A checkpoint is a pickle, and a pickle
can name any Python callable to run while it is read; face-detection weights are passed
around through download links, so nothing ffcore loads may do that. A file that needs
anything else is refused (`UnsafeCheckpointError`) before any of it runs.

What ffcore writes is plain by construction (configs as dicts, RNG states as tuples of ints
and tensors); `save_checkpoint` checks this, so a run never ends with a file that ffcore
itself would refuse. Version 1 files stored numpy's RNG state as a uint32 array: reading
those needs numpy's array reconstruction, allowed for that one dtype (see
`_version1_numpy_globals`).

Caches of ffcore's own results (dataclasses holding numpy arrays) go through
`save_state_file` / `load_state_file`: the same safe loader, and dataclasses rebuilt only
from the types the caller names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import re
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# torch is imported where it is used: the command line imports this module for its error
# types, and commands that read no weights should not pay for torch.

CHECKPOINT_FORMAT = "ffcore-checkpoint"
# 2: RNG states as plain types and tensors (1 held a numpy array).
CHECKPOINT_VERSION = 2

# What torch.load raises for a truncated, damaged or foreign file (found by fuzzing zip and
# legacy checkpoints: cut at any byte, random bytes, random byte flips); AssertionError is
# torch's own check that a legacy file's storage keys resolve.
_DAMAGED_FILE_ERRORS = (RuntimeError, EOFError, ValueError, IndexError, KeyError, TypeError, AttributeError,
                        OSError, OverflowError, MemoryError, AssertionError, struct.error, zipfile.BadZipFile)


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, unreadable or not for the model asked for."""


class UnsafeCheckpointError(CheckpointError):
    """A file that needs more than tensors and plain containers to be read; nothing in it was run."""

    def __init__(self, message: str, path: Path, names: tuple[str, ...] = ()):
        super().__init__(message)
        self.path, self.names = path, names


def _version1_numpy_globals() -> list:
    """numpy's array reconstruction, for the uint32 RNG key of version-1 checkpoints only.

    `dtype` objects of any other kind (object arrays above all, whose items would be
    unpickled) cannot be built: their classes are not on the list.
    """
    import importlib

    import numpy as np

    # Imported by name: numpy 1.26 (the peers' environment) has numpy._core but does not load
    # its multiarray submodule as an attribute; the module path works on numpy 1 and 2 alike.
    reconstruct = importlib.import_module("numpy._core.multiarray")._reconstruct
    return [reconstruct, (reconstruct, "numpy.core.multiarray._reconstruct"),   # numpy 2 and numpy 1 spellings
            np.ndarray, np.dtype, np.dtypes.UInt32DType]


def _allowed_names(allowed: list) -> set[str]:
    names = set()
    for item in allowed:
        if isinstance(item, tuple):
            names.add(item[1])
        else:
            names.add(f"{item.__module__}.{item.__qualname__}")
    return names


def is_ffcore_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT


def unsafe_globals(path: str | Path) -> list[str]:
    """Names of the Python objects a checkpoint would import when read, beyond what the safe loader allows.

    Reads the pickle's opcodes without running them. Only for files in torch's zip format
    (what `torch.save` writes); raises ValueError for others.
    """
    import torch

    return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Write atomically (temporary file + rename) so an interrupted save never leaves a torn file.

    The payload must be readable by the safe loader (tensors, numbers, strings, None, and
    lists / tuples / dicts of them); otherwise nothing is written and the error names the
    types at fault.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        needed = unsafe_globals(tmp)
        if needed:
            raise CheckpointError(f"not writing {path}: the payload holds {', '.join(needed)}, which the safe "
                                  f"loader refuses; store plain types or tensors instead (keys: "
                                  f"{', '.join(sorted(map(str, payload)))})")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _unpickler_reason(exc: BaseException) -> str:
    """The restricted unpickler's own reason, without torch's advice to load unsafely."""
    text = str(exc)
    match = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(?:Check the documentation|$)", text, re.S)
    reason = match.group(1) if match else text
    return " ".join(reason.split())[:300]


def _refusal(path: Path, exc: pickle.UnpicklingError, allowed: set[str]) -> CheckpointError:
    names = re.findall(r"GLOBAL ([\w.]+) was not an allowed global", str(exc))
    try:
        # the full list (the unpickler stops at the first); zip-format files only
        names = [n for n in unsafe_globals(path) if n not in allowed] or names
    except (pickle.UnpicklingError, *_DAMAGED_FILE_ERRORS):
        pass
    if names:
        shown = ", ".join(dict.fromkeys(names))
        return UnsafeCheckpointError(
            f"refused to load {path}: it refers to {shown}, which a weights file does not need and which could "
            f"run code when the file is unpickled; nothing from the file was run. ffcore reads only tensors, "
            f"numbers, strings and plain containers. If the file is yours, re-save only the weights "
            f"(torch.save(model.state_dict(), path)) or an ffcore checkpoint.", path, tuple(dict.fromkeys(names)))
    return UnsafeCheckpointError(
        f"refused to load {path}: the safe loader cannot read it ({_unpickler_reason(exc)}); nothing from the "
        f"file was run. It is damaged, or not a file written by torch.save.", path)


def load_checkpoint_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load any checkpoint file (ffcore's or an original implementation's) with the safe loader.

    Raises `UnsafeCheckpointError` for a file that would import or call anything beyond
    tensors and plain containers, and `CheckpointError` naming the file for a missing,
    truncated or corrupt one.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    allowed = _version1_numpy_globals()
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, exc, _allowed_names(allowed)) from None
    except _DAMAGED_FILE_ERRORS as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated, damaged or not a PyTorch "
                              f"file ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from exc


# ------------------------------------------------------------------- caches of ffcore's own results

_TYPE_TAG = "__ffcore_type__"


def _to_plain(value: Any, where: str) -> Any:
    import torch

    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise CheckpointError(f"cannot store {where}: numpy array of dtype {value.dtype} (numbers only)")
        return {_TYPE_TAG: "ndarray", "data": torch.from_numpy(np.ascontiguousarray(value).copy())}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_TYPE_TAG: "dataclass", "name": f"{type(value).__module__}.{type(value).__qualname__}",
                "fields": {f.name: _to_plain(getattr(value, f.name), f"{where}.{f.name}")
                           for f in dataclasses.fields(value)}}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_plain(item, f"{where}[{i}]") for i, item in enumerate(value))
    if isinstance(value, dict):
        if not all(isinstance(key, (str, int)) for key in value):
            raise CheckpointError(f"cannot store {where}: dict keys must be strings or integers")
        return {key: _to_plain(item, f"{where}[{key!r}]") for key, item in value.items()}
    raise CheckpointError(f"cannot store {where}: {type(value).__name__} is not a plain type")


def _from_plain(value: Any, types: dict[str, type], where: str) -> Any:
    if isinstance(value, list):
        return [_from_plain(item, types, where) for item in value]
    if isinstance(value, tuple):
        return tuple(_from_plain(item, types, where) for item in value)
    if not isinstance(value, dict):
        return value
    tag = value.get(_TYPE_TAG)
    if tag == "ndarray":
        return value["data"].numpy()
    if tag == "dataclass":
        name = value["name"]
        if name not in types:    # built only from the caller's list: a file cannot name what gets built
            raise CheckpointError(f"{where} holds a {name}, which is not among the types expected here "
                                  f"({', '.join(sorted(types))})")
        fields = {key: _from_plain(item, types, where) for key, item in value["fields"].items()}
        try:
            return types[name](**fields)
        except TypeError as exc:     # written when the dataclass had other fields
            raise CheckpointError(f"{where} holds a {name} of another code version ({exc})") from None
    return {key: _from_plain(item, types, where) for key, item in value.items()}


def save_state_file(path: str | Path, value: Any) -> Path:
    """Write a result made of dataclasses, numpy arrays, tensors and plain containers so that
    `load_state_file` can read it with the safe loader (for caches: pickle would run code)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save({"format": "ffcore-state", "value": _to_plain(value, path.name)}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_state_file(path: str | Path, types: tuple[type, ...] = ()) -> Any:
    """Read what `save_state_file` wrote; dataclasses are rebuilt only from `types`."""
    path = Path(path)
    stored = load_checkpoint_file(path)
    if not isinstance(stored, dict) or stored.get("format") != "ffcore-state":
        raise CheckpointError(f"{path} is not a state file written by ffcore.checkpoint.save_state_file")
    return _from_plain(stored["value"], {f"{t.__module__}.{t.__qualname__}": t for t in types}, str(path))


def file_sha256(path: str | Path, length: int = 12) -> str:
    """Short SHA-256 of a file, used to name checkpoints in provenance records."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]
