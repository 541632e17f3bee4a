"""Specification of the grid_sample formulation of the modulated deformable convolution:
same values and gradients as `torchvision.ops.deform_conv2d`, and the choice of implementation."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import deform_conv2d

from ffcore.models.context import (DEFORM_IMPLEMENTATIONS, ModulatedDeformConv2d, deform_conv2d_grid_sample,
                                   deform_conv2d_sample_first, resolve_deform_implementation,
                                   set_deform_implementation)
from ffcore.paths import shared_dir


pytestmark = pytest.mark.usefixtures("one_thread")


def random_case(batch, channels, out_channels, height, width, offset_scale, seed, stride=1, padding=1, dilation=1):
    """float64 inputs that require grad; offsets of `offset_scale` pixels reach well outside small maps."""
    generator = torch.Generator().manual_seed(seed)
    out_h = (height + 2 * padding - 2 * dilation - 1) // stride + 1
    out_w = (width + 2 * padding - 2 * dilation - 1) // stride + 1

    def make(*shape, scale=1.0, positive=False):
        t = torch.rand(*shape, generator=generator, dtype=torch.float64) if positive else \
            torch.randn(*shape, generator=generator, dtype=torch.float64)
        return (t * scale).requires_grad_()

    return dict(x=make(batch, channels, height, width),
                offset=make(batch, 18, out_h, out_w, scale=offset_scale),
                weight=make(out_channels, channels, 3, 3),
                mask=make(batch, 9, out_h, out_w, scale=2.0, positive=True))


CASES = [  # (batch, C_in, C_out, H, W, offset scale)
    (2, 3, 4, 1, 1, 0.7),     # a single pixel: every tap but the centre samples outside
    (2, 3, 4, 2, 3, 1.5),
    (1, 5, 2, 7, 6, 0.5),
    (2, 4, 3, 9, 5, 4.0),     # large offsets: many samples land beyond the border
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[3:5])) + f"_off{c[5]}")
@pytest.mark.parametrize("with_mask", [True, False], ids=["mask", "no_mask"])
# the projected form (stride 1, the default) and the sample-first form it replaced
@pytest.mark.parametrize("formulation", [deform_conv2d_grid_sample, deform_conv2d_sample_first],
                         ids=["project_first", "sample_first"])
def test_matches_torchvision_values_and_gradients(case, with_mask, formulation):
    batch, channels, out_channels, height, width, scale = case
    inputs = random_case(batch, channels, out_channels, height, width, scale, seed=height * 31 + width)
    if not with_mask:
        inputs["mask"] = None
    names = [k for k, v in inputs.items() if v is not None]

    expected = deform_conv2d(inputs["x"], inputs["offset"], inputs["weight"], padding=1, mask=inputs["mask"])
    actual = formulation(inputs["x"], inputs["offset"], inputs["weight"], padding=1, mask=inputs["mask"])
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)

    upstream = torch.randn(expected.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads_expected = torch.autograd.grad(expected, [inputs[n] for n in names], upstream)
    grads_actual = torch.autograd.grad(actual, [inputs[n] for n in names], upstream)
    for name, g_actual, g_expected in zip(names, grads_actual, grads_expected):
        torch.testing.assert_close(g_actual, g_expected, rtol=1e-8, atol=1e-8, msg=lambda m: f"grad {name}: {m}")
    # The offsets must really have sent samples outside the image for the large-offset cases.
    if scale >= 1.5:
        offset = inputs["offset"].detach()
        assert (offset.abs() > max(height, width)).any() or height * width <= 6


def test_bias_stride_and_dilation_match_torchvision():
    inputs = random_case(2, 3, 5, 11, 8, 1.0, seed=7, stride=2, padding=2, dilation=2)
    bias = torch.randn(5, dtype=torch.float64)
    expected = deform_conv2d(inputs["x"], inputs["offset"], inputs["weight"], bias=bias, stride=2, padding=2,
                             dilation=2, mask=inputs["mask"])
    actual = deform_conv2d_grid_sample(inputs["x"], inputs["offset"], inputs["weight"], bias=bias, stride=2,
                                       padding=2, dilation=2, mask=inputs["mask"])
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


def test_sample_exactly_one_pixel_outside_contributes_nothing():
    # torchvision's bilinear_interpolate returns 0 for a coordinate <= -1 or >= size. With every
    # tap shifted by dx = -1, output (0, 0) samples columns -2, -1, 0 and rows -1, 0, 1: column -1
    # lies exactly one pixel outside and adds nothing, so only pixels (0, 0) and (1, 0) count.
    x = torch.arange(1.0, 7.0, dtype=torch.float64).view(1, 1, 2, 3)
    weight = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    offset = torch.zeros(1, 18, 2, 3, dtype=torch.float64)
    offset[:, 1::2] = -1.0
    expected = deform_conv2d(x, offset, weight, padding=1)
    actual = deform_conv2d_grid_sample(x, offset, weight, padding=1)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-12)
    assert actual[0, 0, 0, 0].item() == pytest.approx(1.0 + 4.0)
    # Output (1, 2) samples columns 0, 1, 2 and rows 0, 1, 2 (row 2 is outside): every pixel once.
    assert actual[0, 0, 1, 2].item() == pytest.approx(21.0)


def test_module_implementations_agree_and_keep_the_state_dict():
    torch.manual_seed(0)
    layer = ModulatedDeformConv2d(6, 4).double()
    for conv in (layer.offset_conv, layer.mask_conv):   # non-zero offsets and masks
        torch.nn.init.normal_(conv.weight, std=0.3)
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    outputs = {}
    for implementation in ("torchvision", "grid_sample", "auto"):
        layer.implementation = implementation
        outputs[implementation] = layer(x)
    torch.testing.assert_close(outputs["grid_sample"], outputs["torchvision"], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(outputs["auto"], outputs["torchvision"], rtol=1e-10, atol=1e-10)
    assert sorted(layer.state_dict()) == ["mask_conv.bias", "mask_conv.weight", "offset_conv.bias",
                                          "offset_conv.weight", "weight"]


def test_auto_selection():
    cpu, meta = torch.empty(0), torch.empty(0, device="meta")
    assert resolve_deform_implementation("auto", cpu) == "grid_sample"
    assert resolve_deform_implementation("auto", meta) == "torchvision"      # accelerators keep torchvision
    assert resolve_deform_implementation("torchvision", cpu) == "torchvision"
    assert resolve_deform_implementation("grid_sample", meta) == "grid_sample"
    assert set(DEFORM_IMPLEMENTATIONS) == {"auto", "torchvision", "grid_sample"}
    with pytest.raises(ValueError, match="grid_sample"):
        resolve_deform_implementation("cuda_kernel", cpu)
    with pytest.raises(ValueError, match="unknown deformable"):
        ModulatedDeformConv2d(2, 2, implementation="fast")


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
def test_traced_graphs_keep_torchvision_op():
    # ONNX export turns torchvision::deform_conv2d into DeformConv; FLOP counters hook it by name.
    layer = ModulatedDeformConv2d(3, 4).eval()
    x = torch.randn(1, 3, 6, 6)
    traced = torch.jit.trace(layer, (x,))
    assert "torchvision::deform_conv2d" in str(traced.graph)
    assert "grid_sampler" not in str(traced.graph)
    exported = torch.export.export(layer, (x,))
    targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert "torchvision.deform_conv2d.default" in targets
    assert not any("grid_sampler" in t for t in targets)


def test_set_deform_implementation_on_featherface_v1():
    from ffcore.models import create_model

    model = create_model("featherface_v1")
    assert set_deform_implementation(model, "torchvision") == 15
    assert {m.implementation for m in model.modules() if isinstance(m, ModulatedDeformConv2d)} == {"torchvision"}
    assert sum(p.numel() for p in model.parameters()) == 592_371
    with pytest.raises(ValueError):
        set_deform_implementation(model, "nope")


@pytest.mark.skipif(not (shared_dir() / "reference" / "featherface_v1_vectors.pt").is_file(),
                    reason="reference vectors not available")
def test_featherface_v1_reference_outputs_with_grid_sample():
    from ffcore.models import load_pretrained

    reference = torch.load(shared_dir() / "reference" / "featherface_v1_vectors.pt", weights_only=True)
    model = load_pretrained("featherface_v1", reference["state_dict"])
    set_deform_implementation(model, "grid_sample")
    case = reference["A"]
    with torch.no_grad():
        outputs = model(case["input"])[:3]
    errors = [(a - case[k]).abs().max().item() for a, k in zip(outputs, ("loc", "conf", "landm"))]
    assert max(errors) < 1e-4, errors


def test_featherface_v1_training_gradients_match_torchvision():
    """A whole V1 training step (float64, non-zero offsets and masks): every parameter's gradient
    agrees between the two implementations."""
    from ffcore.models import create_model

    torch.manual_seed(0)
    model = create_model("featherface_v1").train().double()
    for layer in model.modules():
        if isinstance(layer, ModulatedDeformConv2d):
            torch.nn.init.normal_(layer.offset_conv.weight, std=0.05)
            torch.nn.init.normal_(layer.mask_conv.weight, std=0.05)
    x = torch.randn(2, 3, 64, 96, dtype=torch.float64)
    grads = {}
    for implementation in ("torchvision", "grid_sample"):
        set_deform_implementation(model, implementation)
        model.zero_grad(set_to_none=True)
        sum(out.square().mean() for out in model(x)[:3]).backward()
        grads[implementation] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads["torchvision"].keys() == grads["grid_sample"].keys()
    scale = max(g.abs().max().item() for g in grads["torchvision"].values())
    for name, expected in grads["torchvision"].items():
        # Relative to the largest gradient: biases ahead of a BatchNorm have gradients of pure round-off.
        difference = (grads["grid_sample"][name] - expected).abs().max().item()
        assert difference <= 1e-9 * scale, f"{name}: {difference:.3g} vs scale {scale:.3g}"
