"""Start-up: each command imports only what it uses (torch, torchvision, OpenCV, pandas, matplotlib,
ONNX are heavy). The wall times are benchmarks/bench_startup.py's; this guards the import graph,
which is what the times follow from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ffcore.cli import COMMANDS

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "torch._dynamo", "cv2", "pandas", "matplotlib", "onnx", "onnxruntime", "scipy",
         "fvcore", "sympy", "yaml")
SUBCOMMANDS = ("params", "models", "synth", "train", "distill", "predict", "evaluate", "detect", "export", "bench",
               "prune", "study", "thesis")


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


def _exit_of(*argv: str, code: int = 0) -> str:
    return f"""
from ffcore.cli import main
try:
    returned = main({list(argv)!r})
except SystemExit as stop:
    returned = stop.code
assert returned == {code}, returned
"""


def test_the_list_covers_every_command():
    from ffcore.cli import build_parser

    assert len(COMMANDS) == len(SUBCOMMANDS)
    assert set(build_parser()._subparsers._group_actions[0].choices) == set(SUBCOMMANDS)


def test_importing_the_package_imports_nothing_heavy():
    assert _imported_after("import ffcore, ffcore.__main__, ffcore.engine, ffcore.eval") == []


@pytest.mark.parametrize("argv", [["--help"], ["--version"]], ids=" ".join)
def test_top_level_help_and_version_import_nothing_heavy(argv):
    assert _imported_after(_exit_of(*argv)) == []


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_help_imports_nothing_heavy(command):
    # train / distill build one option per recipe field and their preset choices: from the
    # torch-free ffcore.engine.config
    assert _imported_after(_exit_of(command, "--help")) == []


def test_a_bad_option_value_is_refused_before_anything_heavy():
    assert _imported_after(_exit_of("train", "--out", "o", "--epochs", "three", code=2)) == []


def test_evaluate_needs_no_deep_learning_stack(tmp_path):
    """`ffcore evaluate` end to end on the WIDER FACE protocol: numpy, scipy for the .mat files."""
    from ffcore.data.synth import TINY_SYNTH, ensure_synthetic_dataset

    root = ensure_synthetic_dataset(tmp_path / "synthetic", TINY_SYNTH)
    from ffcore.data.layout import WiderFaceLayout
    from ffcore.eval import load_ground_truth, write_prediction_file

    gt_dir = WiderFaceLayout.discover(root).ground_truth_dir
    gt = load_ground_truth(gt_dir)
    for i in range(gt.num_images):
        event, name = gt.image_key(i)
        boxes = gt.image_boxes(i)
        write_prediction_file(tmp_path / "pred", event, name, np.c_[boxes, np.full(len(boxes), 0.9)])
    imported = _imported_after(_exit_of("evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(gt_dir),
                                        "--json", str(tmp_path / "ap.json")))
    assert imported == ["scipy"], imported
    assert json.loads((tmp_path / "ap.json").read_text())["easy"] > 0.9


def test_detect_imports_torch_but_not_torchvision_nor_dynamo(tmp_path):
    """A model without deformable convolutions detects with torch alone: NMS is ffcore.boxes.nms."""
    import cv2
    import torch

    from ffcore.checkpoint import save_checkpoint
    from ffcore.models import create_model
    from ffcore.preprocess import sample_image

    model = create_model("retinaface_mnet025")
    save_checkpoint(tmp_path / "m.pt", {"model_name": "retinaface_mnet025", "model_overrides": {},
                                        "state_dict": model.state_dict()})
    cv2.imwrite(str(tmp_path / "photo.jpg"), sample_image(96, 128))
    imported = _imported_after(_exit_of("detect", "--model", "retinaface_mnet025", "--weights", str(tmp_path / "m.pt"),
                                        "--image", str(tmp_path / "photo.jpg"), "--json", str(tmp_path / "f.json")))
    assert "torch" in imported and "cv2" in imported
    assert not {"torchvision", "torch._dynamo", "sympy", "pandas", "matplotlib", "onnx", "scipy"} & set(imported)
    assert isinstance(json.loads((tmp_path / "f.json").read_text()), list)
    del torch


@pytest.mark.parametrize("n", [0, 1, 9, 400, 3000])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nms_and_box_iou_are_torchvision_s(n, dtype):
    """ffcore.boxes replaces torchvision.ops.nms / box_iou: the same kept indices in the same order,
    including ties in score (a coarse score grid makes many) and boxes exactly at the threshold."""
    import torch
    import torchvision.ops

    from ffcore.boxes import box_iou, nms

    generator = torch.Generator().manual_seed(n)
    corner = torch.rand(n, 2, generator=generator) * 200
    boxes = torch.cat([corner, corner + torch.rand(n, 2, generator=generator) * 60], 1).to(getattr(torch, dtype))
    boxes = boxes.round()          # integer coordinates: IoUs that land exactly on simple fractions
    scores = ((torch.rand(n, generator=generator) * 20).round() / 20).to(boxes.dtype)
    for threshold in (-0.1, 0.0, 0.3, 0.4, 0.5, 1.0):
        assert torch.equal(nms(boxes, scores, threshold), torchvision.ops.nms(boxes, scores, threshold))
    # rounded corners make empty boxes too: 0 / 0 is NaN in both
    torch.testing.assert_close(box_iou(boxes, boxes[:50]), torchvision.ops.box_iou(boxes, boxes[:50]),
                               rtol=0, atol=0, equal_nan=True)
