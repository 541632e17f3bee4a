"""Argument types and help shared by several commands."""

from __future__ import annotations

import argparse
from pathlib import Path

MODEL_HELP = "registered model name (see `ffcore params` for the list)"


def registered_model(name: str) -> str:
    """argparse type of model options: an unknown name is refused at once, with the registered ones listed."""
    from ffcore.models.registry import UnknownModelError, model_entry

    try:
        model_entry(name)
    except UnknownModelError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name


def write_json(path: str | Path, text: str) -> Path:
    """Write a report file (folders created) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def parse_size(text: str) -> tuple[int, int]:
    """"640" -> (640, 640); "480x640" -> (480, 640) (height x width)."""
    try:
        values = [int(part) for part in str(text).lower().split("x")]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 32:
        raise ValueError(f"size {text!r}: expected N or HxW (height x width), each at least 32")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])
