"""Start-up: commands import only what they use (torch, OpenCV, pandas, matplotlib, ONNX are heavy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "cv2", "pandas", "matplotlib", "onnx", "onnxruntime", "scipy", "fvcore")


def _imported_after(code: str) -> list[str]:
    """The heavy packages a fresh interpreter holds after running `code`."""
    probe = f"""
import json, sys
{code}
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _help_of(*argv: str) -> str:
    return f"""
from ffcore.cli import main
try:
    main({list(argv)!r})
except SystemExit as stop:
    assert stop.code == 0, stop.code
"""


def test_importing_the_package_imports_nothing_heavy():
    assert _imported_after("import ffcore, ffcore.__main__") == []


def test_top_level_help_imports_nothing_heavy():
    assert _imported_after(_help_of("--help")) == []


@pytest.mark.parametrize("command", ["params", "synth", "train", "distill", "predict", "evaluate", "detect",
                                     "export", "bench", "prune", "thesis"])
def test_every_subcommand_help_imports_nothing_heavy(command):
    assert _imported_after(_help_of(command, "--help")) == []


def test_evaluate_needs_no_deep_learning_stack():
    # the WIDER FACE protocol is numpy (+ scipy for the .mat files, read when called)
    imported = _imported_after("import importlib; importlib.import_module('ffcore.eval')")
    assert "torch" not in imported and "cv2" not in imported, imported
