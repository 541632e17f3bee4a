"""Argument types, the parser class and the user errors shared by every command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MODEL_HELP = "registered model name (`ffcore models` lists them)"

EXIT_USAGE = 2      # a user error: bad option, bad value, missing or unreadable file


class CommandError(Exception):
    """A user error found by a command handler (a bad value or path): printed as one line, exit code 2."""


# Exceptions the library raises for bad input rather than for a bug: (module, class). They are
# looked up in `sys.modules` when an exception reaches `main`, never imported for it, so that
# catching them costs no start-up time (an exception of a module that was never imported cannot
# have been raised).
USER_ERRORS: tuple[tuple[str, str], ...] = (
    ("ffcore.cli.common", "CommandError"),
    ("ffcore.checkpoint", "CheckpointError"),              # missing, damaged, unsafe or mismatched weights
    ("ffcore.preprocess", "ImageReadError"),               # an image that does not decode
    ("ffcore.data.layout", "LayoutError"),                 # a dataset folder in no known layout
    ("ffcore.data.ground_truth", "GroundTruthError"),      # unreadable evaluation .mat files
    ("ffcore.eval.predictions", "PredictionFileError"),    # a malformed prediction file
    ("ffcore.models.registry", "UnknownModelError"),
    ("builtins", "FileNotFoundError"),                     # a bad path given on the command line
    ("builtins", "NotADirectoryError"),
    ("builtins", "IsADirectoryError"),
    ("builtins", "PermissionError"),
)


def user_error_types() -> tuple[type[BaseException], ...]:
    """The classes of USER_ERRORS whose modules are imported (an `except` clause evaluates this only
    when an exception reaches it)."""
    kinds = (getattr(sys.modules.get(module), name, None) for module, name in USER_ERRORS)
    return tuple(kind for kind in kinds if isinstance(kind, type))


def error_line(exc: BaseException) -> str:
    """A user error in one line (an OSError names its file)."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: {exc.filename}"
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: `ffcore train: error: ... (see ffcore train --help)`, exit code 2.

    The default error prints the whole usage first, which for `train` (one option per recipe
    field) is a screenful above the one line that matters."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def registered_model(name: str) -> str:
    """argparse type of model options: an unknown name is refused at once, with the registered ones listed.

    A type rather than `choices`: the registry imports torch, and argparse expands `choices`
    for every `--help`."""
    from ffcore.models.registry import UnknownModelError, model_entry

    try:
        model_entry(name)
    except UnknownModelError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name


def show_loading_notes() -> None:
    """Print the loader's notes (`ffcore.models` at INFO, e.g. the profiler buffers a released file
    carried and that were dropped) on stderr, for commands that load weights; installed once."""
    import logging

    class StderrNotes(logging.Handler):
        # sys.stderr is looked up per message: a stream fixed at installation goes stale when it is replaced.
        def emit(self, record: logging.LogRecord) -> None:
            print(f"note: {record.getMessage()}", file=sys.stderr)

    logger = logging.getLogger("ffcore.models")
    if not any(type(handler).__name__ == "StderrNotes" for handler in logger.handlers):
        logger.addHandler(StderrNotes())
    logger.setLevel(logging.INFO)


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
