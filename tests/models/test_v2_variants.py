"""featherface_v2_ultra and featherface_v2_vit: registration, contract, parameter accounting,
V2 Ultra's parity with the fork and its techniques by hand, nine-anchor priors, linear
attention, training step, ONNX."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import ffcore.models.v2_ultra as v2_ultra
import ffcore.models.v2_vit as v2_vit
from ffcore.anchors import DEFAULT_PRIORS, PriorConfig, make_priors, num_priors
from ffcore.losses import MultiBoxLoss
from ffcore.checkpoint import CheckpointError
from ffcore.models import create_model, list_models, load_pretrained
from ffcore.models.loading import convert_state_dict
from ffcore.paths import shared_dir
from ffcore.models.vit_parts import CrossScaleAttention, LinearAttention

NAMES = ("featherface_v2_ultra", "featherface_v2_vit")
REFERENCE = shared_dir() / "reference"


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
    # two cells: one shared separable conv + BN and 3 fusion weights; the first adds 1x1 + BN projections
    cell = 9 * width + width * width + 2 * width + 3
    assert counts["neck"] == 2 * cell + sum(c * width + 2 * width for c in (64, 128, 256))
    # SSH without groups: 3x3 convs 20->10, 20->5, 5->5 (three times), each with BN
    ssh = 9 * (width * 10 + width * 5 + 3 * 5 * 5) + 2 * (10 + 4 * 5)
    assert counts["context"] == 3 * ssh
    # per level: 3x3 20->10 + BN, then 1x1 convs with bias for 2 + 4 + 10 values per anchor
    assert counts["heads"] == 3 * (9 * width * 10 + 2 * 10 + (10 + 1) * anchors * 16)
    assert counts["shuffle"] == 0
    technique = {k: sum(p.numel() for p in m.parameters()) for k, m in model.techniques.items()}
    # dynamic sharing: a bias-free 1x1 gate (20) and a per-channel intensity (20)
    assert technique == {"smart_feature_reuse": 0, "attention_multiplication": 0, "multiscale_intelligence": 0,
                         "dynamic_sharing": 2 * width, "progressive_enhancement": 0}
    assert sum(counts.values()) == 244_483 + 40


def test_vit_counts_by_hand():
    model = _model("featherface_v2_vit")
    counts = _part_counts(model)
    channels, anchors, hidden, depth = 64, 9, 40, 2
    # shared 3x3 tower without bias, one BN per level and layer, shared 1x1 predictions
    assert counts["head"] == depth * 9 * channels ** 2 + depth * 3 * 2 * channels + (channels + 1) * anchors * 16
    # per level: Linear(2C -> hidden) and Linear(hidden -> C), both with bias
    assert counts["channel_attention"] == 3 * ((2 * channels + 1) * hidden + (hidden + 1) * channels)
    assert model.backbone.feature_channels == (32, 64, 128)


# ------------------------------------------------------- ultra: the fork's function

ULTRA_VECTORS = REFERENCE / "featherface_v2_ultra_vectors.pt"


@pytest.fixture(scope="module")
def ultra_vectors():
    if not ULTRA_VECTORS.is_file():
        pytest.skip(f"reference vectors not found: {ULTRA_VECTORS}")
    return torch.load(ULTRA_VECTORS, map_location="cpu", weights_only=False)


def test_ultra_matches_the_forks_outputs(ultra_vectors):
    """The fork's weights (its registered keys plus its unregistered innovations.* tensors)
    load through the common loader and give the fork's eval-mode outputs within 1e-4."""
    model = load_pretrained("featherface_v2_ultra", {"state_dict": ultra_vectors["state_dict"]})
    assert model.weights_layout == "FeatherFace V2 Ultra fork 93095ff"
    fork_total = ultra_vectors["registered_params"] + ultra_vectors["innovation_params"]["dynamic_sharing"]
    assert sum(p.numel() for p in model.parameters()) == fork_total == 244_523
    vectors = ultra_vectors["A"]
    with torch.no_grad():
        loc, conf, landm = model(vectors["input"])
    for name, got in (("loc", loc), ("conf", conf), ("landm", landm)):
        expected = vectors[name]
        assert got.shape == expected.shape and expected.abs().max() > 0.1, name
        assert (got - expected).abs().max() < 1e-4, name


def test_ultra_leaves_out_the_modules_the_fork_never_called(ultra_vectors):
    """ultra_cbam (178) and ultra_ssh (3,435) were built by the fork but never used in forward."""
    keys = set(ultra_vectors["state_dict"])
    assert any(k.startswith("innovations.ultra_cbam.") for k in keys)
    assert any(k.startswith("innovations.ultra_ssh.") for k in keys)
    converted = convert_state_dict(ultra_vectors["state_dict"], "FeatherFace V2 Ultra fork 93095ff")
    assert set(converted) == set(_model("featherface_v2_ultra").state_dict())


def test_ultra_fork_dict_without_the_innovations_is_refused(ultra_vectors):
    """What the fork's own torch.save would hold: no innovations. The 40 dynamic-sharing values
    are then unknown, and loading says which keys are missing instead of inventing them."""
    saved_by_fork = {k: v for k, v in ultra_vectors["state_dict"].items() if not k.startswith("innovations.")}
    with pytest.raises(CheckpointError, match="techniques.dynamic_sharing.intensity_control"):
        load_pretrained("featherface_v2_ultra", saved_by_fork)


def test_ultra_techniques_are_registered_and_trained():
    model = _model("featherface_v2_ultra")
    assert isinstance(model.techniques, nn.ModuleDict) and tuple(model.techniques) == v2_ultra.TECHNIQUES
    assert {"techniques.dynamic_sharing.complexity_gate.weight",
            "techniques.dynamic_sharing.intensity_control"} <= set(model.state_dict())
    model = model.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in model.techniques.parameters())
    loc, conf, landm = model(torch.randn(2, 3, 48, 48, dtype=torch.float64) * 50)
    (loc.square().mean() + conf.square().mean() + landm.square().mean()).backward()
    for name, parameter in model.techniques.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    meta = _model("featherface_v2_ultra").to("meta")
    assert all(p.device.type == "meta" for p in meta.techniques.parameters())


def test_ultra_techniques_run_in_forward():
    model = _model("featherface_v2_ultra").eval()
    calls = {name: 0 for name in v2_ultra.TECHNIQUES}
    for name in v2_ultra.TECHNIQUES:
        model.techniques[name].register_forward_hook(lambda *_, _n=name: calls.__setitem__(_n, calls[_n] + 1))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    # attention multiplication, dynamic sharing and progressive enhancement run once per level
    assert calls == {"smart_feature_reuse": 1, "multiscale_intelligence": 1, "attention_multiplication": 3,
                     "dynamic_sharing": 3, "progressive_enhancement": 3}


def test_smart_feature_reuse_by_hand():
    levels = [torch.full((1, 1, 4, 4), 1.0), torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 1, 1), 6.0)]
    out = v2_ultra.SmartFeatureReuse()(levels)
    # bilinear resizing of a constant map is that constant
    expected = [1 + 0.3 * 2 + 0.2 * 6, 2 + 0.2 * 1 + 0.2 * 6, 6 + 0.3 * 2 + 0.2 * 1]
    for o, x, value in zip(out, levels, expected):
        assert o.shape == x.shape and torch.allclose(o, torch.full_like(x, value))
    # bilinear, not nearest: a ramp resized to a finer grid takes intermediate values
    ramp = torch.tensor([[[[0.0, 10.0]]]])
    p3 = v2_ultra.SmartFeatureReuse()([torch.zeros(1, 1, 1, 4), ramp, torch.zeros(1, 1, 1, 1)])[0]
    assert torch.allclose(p3, 0.3 * torch.tensor([[[[0.0, 2.5, 7.5, 10.0]]]]))


def test_multiscale_intelligence_by_hand():
    levels = [torch.full((1, 1, 4, 4), 1.0), torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 1, 1), 6.0)]
    out = v2_ultra.MultiScaleIntelligence()(levels)
    assert [float(o.flatten()[0]) for o in out] == pytest.approx([1 + 0.4 * 2, 2 + 0.3 * 1 + 0.3 * 6, 6 + 0.4 * 2])


def test_attention_multiplication_keeps_only_the_last_pass():
    """a0 = x, a1 = a0 + A(a0), a2 = a1 + A(a1), output A(a2); with A(t) = 2t: 2 * 9x."""
    x = torch.randn(2, 3, 4, 4)
    passes = []

    def attention(t):
        passes.append(t)
        return 2 * t

    out = v2_ultra.AttentionMultiplication(3)(x, attention)
    assert len(passes) == 3 and torch.allclose(passes[1], 3 * x) and torch.allclose(passes[2], 9 * x)
    assert torch.allclose(out, 18 * x)


def test_progressive_enhancement_by_hand():
    """Three passes of x <- shuffle4(x + 0.1 tanh x) * (1 + 0.1 i); 20 channels fall back from 8 to 4 groups."""
    enhance = v2_ultra.ProgressiveEnhancement()
    assert enhance.shuffle_groups(20) == 4 and enhance.shuffle_groups(16) == 8 and enhance.shuffle_groups(7) == 1
    x = torch.randn(1, 20, 3, 3)
    expected = x
    for i in range(3):
        expected = expected + 0.1 * torch.tanh(expected)
        # standard shuffle of 4 groups of 5: output channel 4 * j + g is input channel 5 * g + j
        order = [5 * g + j for j in range(5) for g in range(4)]
        expected = expected[:, order] * (1 + 0.1 * i)
    assert torch.allclose(enhance(x), expected, atol=1e-6)


def test_dynamic_sharing_branches_on_the_batch_mean():
    sharing = v2_ultra.DynamicSharing(4)
    with torch.no_grad():
        sharing.intensity_control.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]).view(4, 1, 1))
        sharing.complexity_gate.weight.fill_(1.0)
    module = lambda t: t + 100.0  # noqa: E731
    bright, dark = torch.full((1, 4, 2, 2), 1.0), torch.full((1, 4, 2, 2), -1.0)
    g = sharing.intensity_control
    # complex scene: sigmoid(4) > 0.5 -> module(x) * g * s
    assert torch.allclose(sharing(bright, module), (bright + 100) * g * torch.sigmoid(torch.tensor(4.0)))
    # simple scene: sigmoid(-4) < 0.5 -> the module is skipped, x * g
    assert torch.allclose(sharing(dark, module), dark * g)
    # the decision uses the mean over the batch: the dark image follows the bright ones
    batch = torch.cat([bright, bright, dark])
    assert torch.allclose(sharing(batch, module)[2], (dark[0] + 100) * g * torch.sigmoid(torch.tensor(-4.0)))


def test_ultra_state_dict_round_trip_keeps_the_techniques():
    source = _model("featherface_v2_ultra", seed=0).eval()
    with torch.no_grad():
        source.techniques["dynamic_sharing"].intensity_control.mul_(1.5)
    target = _model("featherface_v2_ultra", seed=1).eval()
    target.load_state_dict(source.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(source(x)[0], target(x)[0])


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
    head = "heads.levels.0.cls" if name == "featherface_v2_ultra" else "head.cls"
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
