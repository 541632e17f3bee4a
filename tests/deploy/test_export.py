"""ONNX export: parity with PyTorch in ONNX Runtime at several sizes, DeformConv for V1, INT8."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from ffcore.deploy.export import ExportError, check_parity, export_onnx, onnx_operators, sample_batch
from ffcore.deploy.int8 import calibration_images, output_agreement, quantize_int8
from ffcore.models import create_model, load_pretrained
from ffcore.deploy.runtime import OnnxDetector
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


def test_v1_exports_as_onnx_deformconv_and_runs_at_any_input_size(tmp_path):
    torch.set_num_threads(1)
    model = _reference_model("featherface_v1")
    # Non-zero offsets, so that a DeformConv that ignored them would show in the parity.
    offsets_changed = 0
    for module in model.modules():
        if hasattr(module, "offset_conv"):
            torch.nn.init.normal_(module.offset_conv.weight, std=0.01)
            offsets_changed += 1
    assert offsets_changed == 15
    # Original-size evaluation feeds sizes like these: odd, not multiples of 32, both parities.
    sizes = ((375, 500), (480, 736), (640, 640))
    result = export_onnx(model, tmp_path / "featherface_v1.onnx", parity_sizes=sizes)
    assert result.operators.get("DeformConv") == 15
    assert result.parity.passed and result.parity.max_abs_diff <= 1e-4, result.parity.to_text()
    assert {(r["height"], r["width"]) for r in result.parity.rows} == set(sizes)
    dims = onnx.load(str(result.path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[2].dim_param and dims[3].dim_param     # symbolic H, W: no multiple-of-32 constraint left


def test_tf_same_max_pool_is_computed_from_the_input_shape_in_the_onnx_graph(tmp_path):
    """V1's BiFPN down-sampling: TF-"same" zero padding whose split depends on the parity of H and W."""
    from ffcore.models.necks import _same_max_pool

    class Pool(torch.nn.Module):
        def forward(self, x):
            pooled = _same_max_pool(x)
            # three outputs, as the export contract wants; flattened so any size stacks
            return pooled.flatten(1), x.flatten(1)[:, :1], pooled.amax(dim=(2, 3))

    path = export_onnx(Pool(), tmp_path / "pool.onnx", parity_sizes=None).path
    operators = onnx_operators(path)
    assert operators.get("MaxPool") == 1 and operators.get("Pad") == 1 and operators.get("Shape", 0) >= 1
    session = OnnxDetector(path)
    for height, width in ((32, 32), (33, 32), (32, 33), (7, 9), (375, 500)):
        x = torch.randn(1, 3, height, width) - 1.0   # mostly negative: a wrong zero border changes the max
        expected = torch.nn.functional.max_pool2d(
            torch.nn.functional.pad(x, [(width % 2 == 1) * 1, 1, (height % 2 == 1) * 1, 1]), 3, 2)
        got = session(x)[0].reshape(expected.shape)
        assert got.shape[-2:] == ((height + 1) // 2, (width + 1) // 2)
        assert torch.equal(got, expected), (height, width)


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


# --------------------------------------------------------------------------------------------
# The deploy graph: exact rewrites, written by default
# --------------------------------------------------------------------------------------------

def test_every_deploy_step_keeps_v2_outputs_within_1e_5_and_rewrites_what_it_names():
    from ffcore.deploy.graph import DeploySteps, deploy_model, max_output_difference
    from ffcore.models.shuffle import ChannelShuffleLight

    torch.set_num_threads(1)
    model = _reference_model("featherface_v2")
    ladder = DeploySteps().cumulative()
    assert [label for label, _ in ladder] == ["literal", "+ fold_batchnorm", "+ fold_shuffle", "+ merge_heads",
                                              "+ compact_attention", "+ dense_grouped_convs"]
    for label, steps in ladder:
        deployed = deploy_model(model, steps, check=None)
        assert max_output_difference(model, deployed, (97, 131)) <= 1e-5, label
    applied = deployed.deploy_applied
    # V2: 3 shuffles, 1 head block, 6 channel gates (3 backbone + 3 neck levels); BN everywhere
    assert applied["fold_shuffle"] == 3 and applied["merge_heads"] == 1 and applied["compact_attention"] == 6
    assert applied["fold_batchnorm"] > 50
    grouped = [m for m in deployed.modules() if isinstance(m, torch.nn.Conv2d) and 1 < m.groups < m.in_channels]
    assert applied["dense_grouped_convs"] > 0 and not grouped
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, ChannelShuffleLight)) for m in deployed.modules())
    # the trained model itself is left alone
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_deploy_rewrites_are_exact_for_retinaface_and_v1_too():
    from ffcore.deploy.graph import deploy_model, max_output_difference

    torch.set_num_threads(1)
    for name in ("retinaface_mnet025", "featherface_v1"):
        model = _reference_model(name)
        for module in model.modules():
            if hasattr(module, "offset_conv"):   # non-zero offsets: the deformable sampling really moves
                torch.nn.init.normal_(module.offset_conv.weight, std=0.01)
        deployed = deploy_model(model)
        assert max_output_difference(model, deployed, (96, 128)) <= 1e-5, name
        assert deployed.deploy_applied["merge_heads"] == 1
        # every batch norm folded, the ones after V1's 15 deformable convolutions included
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deployed.modules()), name


def test_export_writes_the_deploy_graph_by_default_and_the_literal_one_on_request(v2_export, tmp_path):
    model, deployed = v2_export
    literal = export_onnx(model, tmp_path / "v2_literal.onnx", parity_sizes=SMALL_SIZES, deploy=False)
    assert deployed.parity.passed and literal.parity.passed
    # heads: 9 per-level convs -> 3; the 6 channel gates' MLPs: Gemms -> two 1x1 convs each;
    # shuffles: no Reshape/Transpose pair left for them
    assert sum(deployed.operators.values()) < sum(literal.operators.values())
    assert deployed.operators["Conv"] == literal.operators["Conv"] - 6 + 2 * 6
    assert literal.operators.get("Gemm", 0) > 0 and "Gemm" not in deployed.operators
    assert deployed.operators.get("Transpose", 0) < literal.operators.get("Transpose", 0)
    # both files compute the trained model's function
    x = sample_batch(100, 150)
    for a, b in zip(OnnxDetector(deployed.path)(x), OnnxDetector(literal.path)(x)):
        assert torch.allclose(a, b, atol=1e-4, rtol=0)


def test_int8_keeps_the_first_convolution_and_the_heads_in_float(v2_export, tmp_path):
    from ffcore.deploy.int8 import float_boundary_nodes

    _, result = v2_export
    graph = onnx.load(str(result.path)).graph
    kept = set(float_boundary_nodes(result.path))
    by_name = {node.name: node for node in graph.node}
    first_conv = next(n for n in graph.node if n.op_type == "Conv" and graph.input[0].name in n.input)
    assert first_conv.name in kept
    assert sum(by_name[n].op_type == "Conv" for n in kept) == 1 + 3     # stem + one merged head conv per level
    images = calibration_images(shared_dir() / "images", count=2)
    with pytest.raises(ValueError, match="calibration method"):
        quantize_int8(result.path, tmp_path / "x.onnx", images, size=160, method="median")
    int8 = onnx.load(str(quantize_int8(result.path, tmp_path / "v2_int8.onnx", images, size=160,
                                       method="entropy"))).graph
    producers = {out: node.op_type for node in int8.node for out in node.output}
    # the outputs come from float operators, not from a DequantizeLinear
    assert all(producers[o.name] != "DequantizeLinear" for o in int8.output)


def test_int8_calibrates_on_training_images_not_on_the_evaluated_ones(tmp_path):
    import numpy as np
    import cv2

    for split in ("train", "val"):
        folder = tmp_path / f"WIDER_{split}" / "images" / "0--Event"
        folder.mkdir(parents=True)
        cv2.imwrite(str(folder / f"{split}_0.jpg"), np.zeros((8, 8, 3), np.uint8))
    assert [p.name for p in calibration_images(tmp_path)] == ["train_0.jpg"]
    assert [p.name for p in calibration_images(tmp_path, split="val")] == ["val_0.jpg"]
    (tmp_path / "WIDER_train" / "images" / "0--Event" / "train_0.jpg").unlink()
    (tmp_path / "WIDER_train" / "images" / "0--Event").rmdir()
    (tmp_path / "WIDER_train" / "images").rmdir()
    assert [p.name for p in calibration_images(tmp_path)] == ["val_0.jpg"]   # no training split: validation


def test_int8_calibration_finds_every_training_layout_the_data_layer_accepts(tmp_path):
    import cv2

    # RetinaFace's own layout: train/images next to train/label.txt, val/images
    for split in ("train", "val"):
        folder = tmp_path / split / "images" / "0--Event"
        folder.mkdir(parents=True)
        cv2.imwrite(str(folder / f"{split}_0.jpg"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "train" / "label.txt").write_text("# 0--Event/train_0.jpg\n1 1 4 4\n")
    assert [p.name for p in calibration_images(tmp_path)] == ["train_0.jpg"]
    assert [p.name for p in calibration_images(tmp_path, split="val")] == ["val_0.jpg"]
    with pytest.raises(ValueError, match="'test'"):
        calibration_images(tmp_path, split="test")


def test_calibration_reader_letterboxes_like_the_inference_input(tmp_path):
    import cv2

    from ffcore.deploy.int8 import _calibration_reader
    from ffcore.preprocess import MEAN_BGR

    image = np.random.default_rng(0).integers(0, 256, (90, 150, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    reader = _calibration_reader([tmp_path / "a.png"], size=128)
    got = reader.get_next()["image"]
    assert reader.get_next() is None
    # Oracle, written out: long side to 128 (bilinear), minus the mean, zero padding right and bottom.
    resized = cv2.resize(image, (128, round(90 * 128 / 150)), interpolation=cv2.INTER_LINEAR)
    expected = np.zeros((1, 3, 128, 128), np.float32)
    expected[0, :, :resized.shape[0], :] = (resized.astype(np.float32) - np.float32(MEAN_BGR)).transpose(2, 0, 1)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("groups, bias", [(1, False), (1, True), (8, False)])
def test_batch_norm_folding_from_torch_equals_conv_then_batch_norm(groups, bias):
    # deploy.fold_batchnorm uses torch.nn.utils.fusion.fuse_conv_bn_eval: its weights are the fold
    # computed in float64 to float32 rounding, and its outputs those of bn(conv(x)).
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    torch.manual_seed(groups + bias)
    conv = nn.Conv2d(8, 16 if groups == 1 else 8, 3, padding=1, groups=groups, bias=bias).eval()
    bn = nn.BatchNorm2d(conv.out_channels).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.1, 3)
        bn.weight.uniform_(0.5, 2), bn.bias.uniform_(-1, 1)
    fused = fuse_conv_bn_eval(conv, bn)
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    conv_bias = conv.bias.double() if bias else torch.zeros(conv.out_channels, dtype=torch.float64)
    torch.testing.assert_close(fused.weight.double(), conv.weight.double() * scale[:, None, None, None],
                               rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(fused.bias.double(), (conv_bias - bn.running_mean.double()) * scale + bn.bias.double(),
                               rtol=1e-6, atol=1e-6)
    x = torch.randn(2, 8, 12, 12)
    with torch.no_grad():
        assert float((fused(x) - bn(conv(x))).abs().max()) < 1e-5
