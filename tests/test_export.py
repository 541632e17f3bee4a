"""ONNX export: parity with PyTorch in ONNX Runtime at several sizes, DeformConv for V1, INT8."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from ffcore.export import (ExportError, OnnxDetector, calibration_images, check_parity, export_onnx,
                           onnx_operators, output_agreement, quantize_int8, sample_batch)
from ffcore.models import create_model, load_pretrained
from ffcore.paths import shared_dir
from ffcore.postprocess import postprocess

REFERENCE = shared_dir() / "reference"
RETINAFACE_WEIGHTS = shared_dir() / "weights" / "retinaface_mnet025_widerface.pth"
SMALL_SIZES = ((160, 160), (100, 150))   # square and non-square, not multiples of 32: no shape specialisation


def _reference_model(name):
    """The model with the reference vectors' randomised weights and BN statistics (non-degenerate outputs)."""
    path = REFERENCE / f"{name}_vectors.pt"
    if not path.is_file():
        pytest.skip(f"reference vectors not found: {path}")
    return load_pretrained(name, torch.load(path, weights_only=True)["state_dict"]).eval()


@pytest.fixture(scope="module")
def v2_export(tmp_path_factory):
    torch.set_num_threads(1)
    model = _reference_model("featherface_v2")
    path = tmp_path_factory.mktemp("onnx") / "featherface_v2.onnx"
    return model, export_onnx(model, path, parity_sizes=SMALL_SIZES)


def test_v2_export_matches_pytorch_at_two_sizes(v2_export):
    model, result = v2_export
    report = result.parity
    assert report.passed and report.max_abs_diff <= 1e-4
    assert {(r["height"], r["width"]) for r in report.rows} == set(SMALL_SIZES)
    assert {r["output"] for r in report.rows} == {"loc", "conf", "landm"}
    # the check is not vacuous: the outputs are far from zero compared with the tolerance
    assert min(r["max_abs_ref"] for r in report.rows) > 1e-2
    model_proto = onnx.load(str(result.path))
    assert any(op.domain in ("", "ai.onnx") and op.version >= 19 for op in model_proto.opset_import)
    assert "DeformConv" not in result.operators


def test_exported_graph_has_dynamic_batch_height_width(v2_export):
    model, result = v2_export
    dims = onnx.load(str(result.path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[1].dim_value == 3
    assert all(d.dim_param and not d.dim_value for i, d in enumerate(dims) if i != 1)
    # batch 2 at a size the export never saw
    x = sample_batch(96, 224, batch=2)
    with torch.no_grad():
        reference = model(x)
    outputs = OnnxDetector(result.path)(x)
    for ref, out in zip(reference, outputs):
        assert out.shape == ref.shape
        assert torch.allclose(out, ref, atol=1e-4, rtol=0)


def test_int8_quantisation_runs_and_follows_fp32(v2_export, tmp_path):
    _, result = v2_export
    images = calibration_images(shared_dir() / "images", count=2)
    int8_path = quantize_int8(result.path, tmp_path / "v2_int8.onnx", images, size=160)
    operators = onnx_operators(int8_path)
    assert operators.get("QuantizeLinear", 0) > 10 and operators.get("DequantizeLinear", 0) > 10
    agreement = output_agreement(result.path, int8_path, size=160)
    for name, values in agreement.items():
        # quantised, so not equal; but clearly the same function
        assert 0.9 < values["pearson_r"] < 1.0, (name, values)
        assert values["max_abs_diff"] > 0


def test_retinaface_cli_export_prints_parity_and_detections_agree(tmp_path, capsys):
    if not RETINAFACE_WEIGHTS.is_file():
        pytest.skip(f"trained RetinaFace weights not found: {RETINAFACE_WEIGHTS}")
    from ffcore.cli import main

    torch.set_num_threads(1)
    out = tmp_path / "retinaface.onnx"
    assert main(["export", "--model", "retinaface_mnet025", "--weights", str(RETINAFACE_WEIGHTS),
                 "--out", str(out), "--parity-sizes", "160", "100x150"]) == 0
    printed = capsys.readouterr().out
    assert "overall: PASSED" in printed and "100x150" in printed
    # A trained detector: the same faces come out of post-processing for both runtimes.
    model = load_pretrained("retinaface_mnet025", str(RETINAFACE_WEIGHTS)).eval()
    x = sample_batch(320, 320)
    with torch.no_grad():
        expected = postprocess(*model(x), (320, 320))[0].above(0.5)
    got = postprocess(*OnnxDetector(out)(x), (320, 320))[0].above(0.5)
    assert len(expected) >= 3 and len(got) == len(expected)
    assert torch.allclose(got.boxes, expected.boxes, atol=1e-2)
    assert torch.allclose(got.scores, expected.scores, atol=1e-5)


def test_old_opset_is_refused_and_a_disagreeing_model_fails_strict_parity(tmp_path):
    with pytest.raises(ValueError, match="opset"):
        export_onnx(torch.nn.Identity(), tmp_path / "x.onnx", opset=17)

    class Flaky(torch.nn.Module):
        """Differs between two calls (dropout in train mode): parity must catch it."""

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 16, 3, stride=8, padding=1)

        def forward(self, x):
            y = self.conv(x).flatten(2).transpose(1, 2)
            return y[..., :4], y[..., 4:6], y[..., 6:16]

    model = Flaky()
    path = tmp_path / "flaky.onnx"
    result = export_onnx(model, path, parity_sizes=((64, 64),))
    assert result.parity.passed
    with torch.no_grad():
        model.conv.bias += 1.0           # the PyTorch model moves on; the ONNX file does not
    report = check_parity(model, path, sizes=((64, 64),))
    assert not report.passed and abs(report.max_abs_diff - 1.0) < 1e-3


@pytest.mark.slow
def test_v1_deformable_ssh_exports_as_onnx_deformconv(tmp_path):
    torch.set_num_threads(1)
    model = _reference_model("featherface_v1")
    # Non-zero offsets, so that a DeformConv that ignored them would show in the parity.
    offsets_changed = 0
    for module in model.modules():
        if hasattr(module, "offset_conv"):
            torch.nn.init.normal_(module.offset_conv.weight, std=0.01)
            offsets_changed += 1
    assert offsets_changed == 15
    result = export_onnx(model, tmp_path / "featherface_v1.onnx", parity_sizes=((128, 128), (96, 160)))
    assert result.operators.get("DeformConv") == 15
    assert result.parity.passed, result.parity.to_text()


def test_same_padding_matches_the_tensorflow_formula_for_every_size():
    """The models pad in a closed form (export-friendly); it must equal (ceil(n/s) - 1)*s - n + k."""
    import math

    from ffcore.models.blocks import tf_same_pad

    for height in range(5, 40):
        x = torch.randn(1, 1, height, height + 3)
        for kernel, stride in ((3, 1), (3, 2), (1, 1), (5, 2)):
            padded = tf_same_pad(x, kernel, stride)
            for side, n in ((-2, height), (-1, height + 3)):
                extra = max((math.ceil(n / stride) - 1) * stride - n + kernel, 0)
                assert padded.shape[side] == n + extra
            extra_h = max((math.ceil(height / stride) - 1) * stride - height + kernel, 0)
            extra_w = max((math.ceil((height + 3) / stride) - 1) * stride - (height + 3) + kernel, 0)
            top, left = extra_h // 2, extra_w // 2
            assert torch.equal(padded[..., top:top + height, left:left + height + 3], x)
