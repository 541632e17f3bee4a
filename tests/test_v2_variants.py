"""featherface_v2_ultra and featherface_v2_vit: registration, contract, parameter accounting,
techniques wired and trained, nine-anchor priors, linear attention, training step, ONNX."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import ffcore.models.v2_ultra as v2_ultra
import ffcore.models.v2_vit as v2_vit
from ffcore.anchors import DEFAULT_PRIORS, PriorConfig, make_priors, num_priors
from ffcore.losses import MultiBoxLoss
from ffcore.models import create_model, list_models
from ffcore.models.vit_parts import CrossScaleAttention, LinearAttention

NAMES = ("featherface_v2_ultra", "featherface_v2_vit")
TECHNIQUES = ("smart_feature_reuse", "attention_multiplication", "progressive_enhancement",
              "multi_scale_intelligence", "dynamic_weight_sharing")


@pytest.fixture(autouse=True)
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _model(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name)


def _randomise_batchnorm(model: nn.Module, seed: int = 1) -> None:
    """Non-trivial BN statistics so eval-mode outputs are O(1) and comparisons mean something."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


def _part_counts(model: nn.Module) -> dict[str, int]:
    return {part: sum(p.numel() for p in getattr(model, part).parameters()) for part in model.parts}


# ------------------------------------------------------------------------------ registry

def test_both_models_are_registered():
    assert set(NAMES) <= set(list_models())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("train", [True, False])
def test_contract_at_an_odd_size(name, train):
    model = _model(name).train(train)
    height, width = 37, 53
    loc, conf, landm, features = model(torch.randn(2, 3, height, width) * 50, return_features=True)
    priors = num_priors(height, width, model.prior_config)
    assert loc.shape == (2, priors, 4) and conf.shape == (2, priors, 2) and landm.shape == (2, priors, 10)
    assert len(features) == 3
    assert [tuple(f.shape[-2:]) for f in features] == [(math.ceil(height / s), math.ceil(width / s))
                                                       for s in model.prior_config.steps]
    assert all(torch.isfinite(t).all() for t in (loc, conf, landm))
    assert model.name == name and model.overrides == {}


@pytest.mark.parametrize("name", NAMES)
def test_prior_count_at_640(name):
    model = _model(name).eval()
    with torch.no_grad():
        loc, _, _ = model(torch.zeros(1, 3, 640, 640))
    assert loc.shape[1] == make_priors(640, 640, model.prior_config).shape[0]
    assert loc.shape[1] == {"featherface_v2_ultra": 16_800, "featherface_v2_vit": 75_600}[name]


def test_overrides_are_checked_and_recorded():
    model = create_model("featherface_v2_vit", neck_cells=1)
    assert model.overrides == {"neck_cells": 1} and len(model.neck.cells) == 1
    with pytest.raises(TypeError, match="neck_celz"):
        create_model("featherface_v2_vit", neck_celz=1)
    with pytest.raises(TypeError, match="UltraConfig"):
        create_model("featherface_v2_ultra", channel=24)


# --------------------------------------------------------------------------- accounting

@pytest.mark.parametrize("name", NAMES)
def test_part_counts_sum_to_the_total(name):
    model = _model(name)
    counts = _part_counts(model)
    assert set(dict(model.named_children())) == set(model.parts)
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())


def test_ultra_counts_by_hand():
    model = _model("featherface_v2_ultra")
    counts = _part_counts(model)
    width, anchors = 20, 2
    # shared CBAM: bias-free channel MLPs c -> 4 -> c (reduction 128 floors to the minimum 4), 7x7 spatial + BN
    assert counts["backbone_attention"] == sum(2 * c * 4 for c in (64, 128, 256)) + 98 + 2
    assert counts["neck_attention"] == 3 * 2 * width * 4 + 98 + 2
    technique = {k: sum(p.numel() for p in m.parameters()) for k, m in model.techniques.items()}
    assert technique == {"smart_feature_reuse": 0, "attention_multiplication": 0, "progressive_enhancement": 0,
                         "multi_scale_intelligence": 0,
                         # shared 1x1 convs (with bias) for 2 + 4 + 10 values per anchor, plus a
                         # per-level channel scale and shift
                         "dynamic_weight_sharing": (width + 1) * anchors * 16 + 2 * 3 * width}


def test_vit_counts_by_hand():
    model = _model("featherface_v2_vit")
    counts = _part_counts(model)
    channels, anchors, hidden, depth = 64, 9, 40, 2
    # shared 3x3 tower without bias, one BN per level and layer, shared 1x1 predictions
    assert counts["head"] == depth * 9 * channels ** 2 + depth * 3 * 2 * channels + (channels + 1) * anchors * 16
    # per level: Linear(2C -> hidden) and Linear(hidden -> C), both with bias
    assert counts["channel_attention"] == 3 * ((2 * channels + 1) * hidden + (hidden + 1) * channels)
    assert model.backbone.feature_channels == (32, 64, 128)


# ----------------------------------------------------------------- ultra's techniques

def test_ultra_techniques_are_registered_modules():
    model = _model("featherface_v2_ultra")
    assert isinstance(model.techniques, nn.ModuleDict) and tuple(model.techniques) == TECHNIQUES
    keys = set(model.state_dict())
    assert {"techniques.dynamic_weight_sharing.level_scale", "techniques.dynamic_weight_sharing.level_shift",
            "techniques.dynamic_weight_sharing.cls.weight", "techniques.dynamic_weight_sharing.box.bias",
            "techniques.dynamic_weight_sharing.landmark.weight"} <= keys
    named = {n for n, _ in model.named_parameters()}
    assert "techniques.dynamic_weight_sharing.level_scale" in named


def test_ultra_techniques_run_in_forward():
    model = _model("featherface_v2_ultra").eval()
    calls = {name: 0 for name in TECHNIQUES}
    for name in TECHNIQUES:
        model.techniques[name].register_forward_hook(lambda *_, _n=name: calls.__setitem__(_n, calls[_n] + 1))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    # progressive enhancement runs once per level, the others once over the three levels
    assert calls == {**{name: 1 for name in TECHNIQUES}, "progressive_enhancement": 3}


def test_ultra_techniques_follow_to_and_receive_gradients():
    model = _model("featherface_v2_ultra").to(torch.float64)
    assert all(p.dtype == torch.float64 for p in model.techniques.parameters())
    loc, conf, landm = model(torch.randn(2, 3, 48, 48, dtype=torch.float64))
    (loc.square().mean() + conf.square().mean() + landm.square().mean()).backward()
    for name, parameter in model.techniques.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    meta = _model("featherface_v2_ultra").to("meta")
    assert all(p.device.type == "meta" for p in meta.techniques.parameters())


def test_ultra_techniques_change_the_output():
    """Each zero-parameter technique does something: replacing it by the identity changes the output."""
    model = _model("featherface_v2_ultra").eval()
    _randomise_batchnorm(model)
    x = torch.randn(1, 3, 64, 64) * 50
    with torch.no_grad():
        reference = model(x)[1]

    class Identity(nn.Module):
        def forward(self, first, *rest):
            return first

    for name in ("smart_feature_reuse", "attention_multiplication", "progressive_enhancement",
                 "multi_scale_intelligence"):
        original = model.techniques[name]
        model.techniques[name] = Identity()
        with torch.no_grad():
            changed = model(x)[1]
        model.techniques[name] = original
        assert (changed - reference).abs().max() > 1e-4, name


def test_ultra_state_dict_round_trip_keeps_the_techniques():
    source = _model("featherface_v2_ultra", seed=0).eval()
    with torch.no_grad():
        source.techniques["dynamic_weight_sharing"].level_scale.mul_(1.5)
    target = _model("featherface_v2_ultra", seed=1).eval()
    target.load_state_dict(source.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(source(x)[0], target(x)[0])


def test_multi_scale_intelligence_by_hand():
    levels = [torch.full((1, 1, 4, 4), 1.0), torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 1, 1), 6.0)]
    out = v2_ultra.MultiScaleIntelligence()(levels)
    assert [float(o.flatten()[0]) for o in out] == [1 + 4, 2 + 3.5, 6 + 1.5]
    assert [tuple(o.shape) for o in out] == [tuple(x.shape) for x in levels]


# ----------------------------------------------------------------------- vit parts

def test_linear_attention_matches_the_quadratic_form():
    torch.manual_seed(0)
    attention = LinearAttention(channels=8, heads=2, key_dim=3).eval()
    x = torch.randn(1, 8, 3, 5)
    captured = {}
    attention.proj.register_forward_pre_hook(lambda _m, args: captured.setdefault("mixed", args[0]))
    with torch.no_grad():
        attention(x)
        qkv = attention.qkv(x).reshape(1, 2, 3 + 3 + 4, 15)
    q, k, v = qkv.split([3, 3, 4], dim=2)
    phi = lambda t: torch.nn.functional.elu(t) + 1  # noqa: E731
    similarity = torch.einsum("bhdn,bhdm->bhnm", phi(q), phi(k))          # full N x N
    expected = torch.einsum("bhnm,bhem->bhen", similarity / similarity.sum(-1, keepdim=True), v)
    assert torch.allclose(captured["mixed"], expected.reshape(1, 8, 3, 5), atol=1e-5)


def test_shared_head_flattens_in_prior_order():
    """conf index (row * cols + col) * 9 + anchor of P3 is channels [2a, 2a + 2) of the class conv."""
    model = _model("featherface_v2_vit").eval()
    tower_outputs = []
    model.head.cls.register_forward_hook(lambda _m, _args, out: tower_outputs.append(out))
    with torch.no_grad():
        _, conf, _ = model(torch.randn(1, 3, 64, 96))
    p3 = tower_outputs[0]                      # [1, 18, 8, 12]
    row, col, anchor = 1, 5, 7
    assert torch.equal(conf[0, (row * 12 + col) * 9 + anchor], p3[0, 2 * anchor:2 * anchor + 2, row, col])
    p4 = tower_outputs[1]                      # first prior of P4 follows all 8 * 12 * 9 of P3
    assert torch.equal(conf[0, 8 * 12 * 9 + 4], p4[0, 8:10, 0, 0])


def test_cross_scale_attention_weights_sum_to_one():
    attention = CrossScaleAttention(channels=4, key_dim=2)
    constant = torch.arange(4.0).reshape(1, 4, 1, 1)
    levels = [constant.expand(1, 4, 8, 8), constant.expand(1, 4, 4, 4), constant.expand(1, 4, 2, 2)]
    for level, out in zip(levels, attention(levels)):
        assert torch.allclose(out, level, atol=1e-6)


# -------------------------------------------------------------------------- priors

def test_default_priors_unchanged_by_the_ratio_field():
    assert DEFAULT_PRIORS.aspect_ratios == (1.0,) and DEFAULT_PRIORS.anchors_per_location == 2
    priors = make_priors(640, 640)
    assert priors.shape == (16_800, 4)
    # first cell of P3: sizes 16 and 32 px, square
    assert torch.allclose(priors[:2], torch.tensor([[4 / 640, 4 / 640, 16 / 640, 16 / 640],
                                                    [4 / 640, 4 / 640, 32 / 640, 32 / 640]]))


def test_three_ratio_priors_by_hand():
    config = v2_vit.VIT_PRIORS
    assert config.anchors_per_location == 9 and config.variance == DEFAULT_PRIORS.variance
    height, width = 64, 96
    priors = make_priors(height, width, config)
    assert priors.shape[0] == num_priors(height, width, config) == 9 * (8 * 12 + 4 * 6 + 2 * 3)
    cell = priors[:9]
    assert torch.allclose(cell[:, 0], torch.full((9,), 4 / width)) and torch.allclose(cell[:, 1], torch.full((9,), 4 / height))
    # size-major, ratio-minor; width/height = ratio, area = size^2
    sizes = torch.tensor([16.0, 24.0, 32.0]).repeat_interleave(3)
    ratios = torch.tensor([0.8, 1.0, 1.25]).repeat(3)
    w, h = cell[:, 2] * width, cell[:, 3] * height
    assert torch.allclose(w / h, ratios) and torch.allclose(w * h, sizes ** 2)
    # second cell of P3 moves one stride right; first cell of P4 starts after all of P3
    assert torch.isclose(priors[9, 0], torch.tensor(12 / width))
    assert torch.allclose(priors[9 * 96, :2], torch.tensor([8 / width, 8 / height]))


def test_ratio_validation():
    with pytest.raises(ValueError, match="aspect_ratios"):
        PriorConfig(aspect_ratios=())
    with pytest.raises(ValueError, match="aspect_ratios"):
        PriorConfig(aspect_ratios=(1.0, -2.0))


# ------------------------------------------------------------------------ training

@pytest.mark.parametrize("name", NAMES)
def test_one_training_step_with_the_models_priors(name):
    model = _model(name).train()
    size = 96
    priors = make_priors(size, size, model.prior_config)
    face = [0.30, 0.25, 0.60, 0.70] + [0.40, 0.40, 0.52, 0.40, 0.46, 0.50, 0.40, 0.60, 0.52, 0.60] + [1.0]
    targets = [torch.tensor([face]), torch.tensor([[0.1, 0.1, 0.4, 0.5] + [-1.0] * 10 + [-1.0]])]
    criterion = MultiBoxLoss()
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    terms = criterion(predictions=model(torch.randn(2, 3, size, size) * 50), priors=priors, targets=targets)
    loss = criterion.total(terms)
    assert torch.isfinite(loss) and terms["loc"] > 0 and terms["landm"] > 0
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    head = "techniques.dynamic_weight_sharing" if name == "featherface_v2_ultra" else "head.cls"
    assert any(n.startswith(head) for n in changed)
    assert any(n.startswith("backbone.") for n in changed)


# ---------------------------------------------------------------------------- ONNX

def test_onnx_export_matches_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    import warnings

    for name in NAMES:
        model = _model(name).eval()
        _randomise_batchnorm(model)
        x = torch.randn(1, 3, 48, 64) * 50
        path = tmp_path / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=19,
                              input_names=["input"], output_names=["loc", "conf", "landm"], verbose=False)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outputs = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            reference = model(x)
        for got, expected in zip(outputs, reference):
            assert got.shape == tuple(expected.shape)
            assert expected.abs().max() > 1e-2  # non-trivial values
            assert torch.allclose(torch.from_numpy(got), expected, atol=1e-4), name
