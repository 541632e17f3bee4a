"""Specification of ffcore.models: registry, the model contract, weight loading and parity
with the reference vectors of the original implementations."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from ffcore.anchors import make_priors, num_priors
from ffcore.checkpoint import CheckpointError, save_checkpoint
from ffcore.models import UnknownModelError, create_model, list_models, load_pretrained
from ffcore.models.blocks import channel_shuffle, tf_same_pad
from ffcore.models.loading import strip_wrapper_prefixes
from ffcore.paths import shared_dir
from support import n_params, vectors

REFERENCE = shared_dir() / "reference"
REFERENCE_MODELS = ("retinaface_mnet025", "featherface_v1", "featherface_v2")
needs_reference = pytest.mark.skipif(not (REFERENCE / "featherface_v1_vectors.pt").is_file(),
                                     reason="reference vectors not available")


pytestmark = pytest.mark.usefixtures("one_thread")


def max_abs_errors(model, reference: dict) -> list[float]:
    with torch.no_grad():
        outputs = model(reference["A"]["input"])
    return [float((out - reference["A"][key]).abs().max()) for out, key in zip(outputs, ("loc", "conf", "landm"))]


# --------------------------------------------------------------------------- registry

def test_registry_lists_reference_models_and_ablation_variants():
    names = list_models()
    for name in (*REFERENCE_MODELS, "featherface_v1_bifpn_light", "featherface_v1_ssh_grouped",
                 "featherface_v1_shared_cbam", "featherface_v1_shuffle_light", "featherface_v1_v2_heads"):
        assert name in names


@pytest.mark.parametrize("name, expected", [("retinaface_mnet025", 426_608), ("featherface_v1", 592_371),
                                            ("featherface_v2", 256_156)])
def test_exact_parameter_counts(name, expected):
    assert n_params(create_model(name)) == expected


def test_unknown_model_lists_registered_names():
    with pytest.raises(UnknownModelError) as info:
        create_model("featherface_v9")
    assert "featherface_v9" in str(info.value) and "featherface_v2" in str(info.value)


def test_overrides_compose_parts_and_are_recorded():
    model = create_model("featherface_v1", neck="bifpn_light")
    assert model.name == "featherface_v1" and model.overrides == {"neck": "bifpn_light"}
    assert n_params(model) == n_params(create_model("featherface_v1_bifpn_light"))
    with pytest.raises(TypeError, match="neck_channels"):
        create_model("featherface_v1", neck_width=32)
    with pytest.raises(ValueError, match="bifpn_light"):
        create_model("featherface_v1", neck="bifpn_heavy")


ABLATION_SWAPS = {  # variant -> the V1 config fields it changes (shared CBAM serves both attention stages)
    "featherface_v1_bifpn_light": {"neck"},
    "featherface_v1_ssh_grouped": {"context"},
    "featherface_v1_shared_cbam": {"backbone_attention", "neck_attention"},
    "featherface_v1_shuffle_light": {"shuffle"},
    "featherface_v1_v2_heads": {"head"},
}


@pytest.mark.parametrize("name", sorted(ABLATION_SWAPS))
def test_ablation_variants_swap_exactly_one_v2_part(name):
    v1, variant = create_model("featherface_v1").config, create_model(name).config
    changed = {f.name for f in dataclasses.fields(v1) if getattr(v1, f.name) != getattr(variant, f.name)}
    assert changed == ABLATION_SWAPS[name]
    v2 = create_model("featherface_v2").config
    assert all(getattr(variant, field) == getattr(v2, field) for field in changed)
    assert variant.neck_channels == 64


# ------------------------------------------------------------------ the model contract

@pytest.mark.parametrize("name", list_models())
def test_every_model_meets_the_contract(name):
    torch.manual_seed(0)
    model = create_model(name)
    assert model.prior_config is not None
    # Odd size, train mode: shapes, finite outputs, gradients reach the first layer.
    height, width = 97, 131
    model.train()
    loc, conf, landm, features = model(torch.randn(2, 3, height, width), return_features=True)
    priors = num_priors(height, width, model.prior_config)
    assert loc.shape == (2, priors, 4) and conf.shape == (2, priors, 2) and landm.shape == (2, priors, 10)
    assert len(features) == 3
    assert all(torch.isfinite(t).all() for t in (loc, conf, landm))
    (loc.square().mean() + conf.square().mean() + landm.square().mean()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads[:3])
    # Smallest supported size, eval mode, real arithmetic.
    model.eval()
    with torch.no_grad():
        loc, _, _ = model(torch.randn(1, 3, 33, 47))
    assert loc.shape == (1, num_priors(33, 47, model.prior_config), 4) and torch.isfinite(loc).all()
    # 640x640 and 1024x683, eval mode, on the meta device: shapes only, no arithmetic
    # (the full-size forward is covered numerically by the parity tests).
    model.eval().to("meta")
    for height, width in ((640, 640), (683, 1024), (33, 47)):
        loc, conf, landm = model(torch.empty(1, 3, height, width, device="meta"))
        priors = make_priors(height, width, model.prior_config).shape[0]
        assert loc.shape == (1, priors, 4) and conf.shape == (1, priors, 2) and landm.shape == (1, priors, 10)
    assert num_priors(640, 640) == 16_800


def test_features_returned_are_the_head_inputs():
    model = create_model("featherface_v2").eval()
    with torch.no_grad():
        _, conf, _, features = model(torch.randn(1, 3, 64, 96), return_features=True)
    assert [tuple(f.shape[-2:]) for f in features] == [(8, 12), (4, 6), (2, 3)]
    first = model.heads.levels[0].cls(features[0])  # level P3, row 0, col 1, anchor 1
    assert torch.allclose(conf[0, (0 * 12 + 1) * 2 + 1], first[0, 2:4, 0, 1])


# ----------------------------------------------------------------- hand-checked blocks

def test_tf_same_padding_puts_the_extra_pixel_after():
    x = torch.ones(1, 1, 4, 5)
    padded = tf_same_pad(x, 3, 2)  # rows: extra = 1*2-4+3 = 1 -> (0, 1); cols: 2*2-5+3 = 2 -> (1, 1)
    assert padded.shape == (1, 1, 5, 7)
    assert padded[0, 0, -1].sum() == 0 and padded[0, 0, 0].sum() == 5
    assert padded[0, 0, :, 0].sum() == 0 and padded[0, 0, :, -1].sum() == 0


def test_channel_shuffle_orders():
    x = torch.arange(8.0).view(1, 8, 1, 1)
    # standard, 2 groups: view (2, 4) -> transpose -> interleave the two halves
    assert channel_shuffle(x, 2, "standard").flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    # alternative, 2 groups: view (4, 2) -> transpose -> even channels first, then odd
    assert channel_shuffle(x, 2, "alternative").flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]


def test_deformable_conv_starts_as_plain_conv():
    from ffcore.models.context import ModulatedDeformConv2d

    layer = ModulatedDeformConv2d(4, 6)
    x = torch.randn(1, 4, 9, 11)
    plain = torch.nn.functional.conv2d(x, layer.weight, padding=1)
    # zero offsets and mask 2*sigmoid(0) = 1 -> an ordinary 3x3 convolution
    assert torch.allclose(layer(x), plain, atol=1e-5)


# ------------------------------------------------------------------------------ loading

@needs_reference
@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_parity_with_reference_vectors_in_eval_mode(name):
    reference = vectors(name)
    model = load_pretrained(name, reference["state_dict"])
    assert not model.training
    with torch.no_grad():
        assert [tuple(t.shape) for t in model(reference["A"]["input"][:, :, :32, :48])] == \
            [(1, num_priors(32, 48), k) for k in (4, 2, 10)]
    assert max(max_abs_errors(model, reference)) < 1e-4


@needs_reference
def test_module_prefix_is_stripped():
    reference = vectors("retinaface_mnet025")
    wrapped = {"module." + k: v for k, v in reference["state_dict"].items()}
    assert all(not k.startswith("module.") for k in strip_wrapper_prefixes(wrapped))
    model = load_pretrained("retinaface_mnet025", {"state_dict": wrapped})
    assert max(max_abs_errors(model, reference)) < 1e-4


@needs_reference
def test_mismatched_checkpoint_names_missing_and_unexpected_keys():
    reference = vectors("featherface_v2")
    with pytest.raises(CheckpointError) as info:
        load_pretrained("retinaface_mnet025", reference["state_dict"])
    message = str(info.value)
    assert "missing keys" in message and "unexpected keys" in message
    assert re.search(r"missing keys \(\d+\): \w+\.", message) and re.search(r"unexpected keys \(\d+\): \w+", message)


def test_ffcore_checkpoint_round_trip(tmp_path: Path):
    torch.manual_seed(1)
    model = create_model("featherface_v2", neck_repeats=1).eval()
    path = save_checkpoint(tmp_path / "ckpt.pt", {"model_name": model.name, "model_overrides": model.overrides,
                                                  "state_dict": model.state_dict()})
    restored = load_pretrained("featherface_v2", path)
    assert restored.overrides == {"neck_repeats": 1} and len(restored.neck.cells) == 1
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(x), restored(x)))
    with pytest.raises(CheckpointError, match="for model 'featherface_v2'"):
        load_pretrained("featherface_v1", path)


def test_missing_checkpoint_file_is_named(tmp_path: Path):
    with pytest.raises(CheckpointError, match="nope.pth"):
        load_pretrained("featherface_v2", tmp_path / "nope.pth")


@pytest.mark.skipif(not (shared_dir() / "weights" / "mobilenetV1X0.25_pretrain.tar").is_file(),
                    reason="ImageNet backbone not available")
def test_pretrained_backbone_initialises_mobilenet():
    path = shared_dir() / "weights" / "mobilenetV1X0.25_pretrain.tar"
    source = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    model = create_model("featherface_v2", pretrained_backbone=path)
    assert torch.equal(model.backbone.stage1[0].conv.weight, source["module.stage1.0.0.weight"])
    assert torch.equal(model.backbone.stage3[1].pointwise.bn.running_var, source["module.stage3.1.4.running_var"])
    assert model.overrides == {}
    default = create_model("retinaface_mnet025", pretrained_backbone=True)
    assert torch.equal(default.backbone.stage2[0].depthwise.conv.weight, source["module.stage2.0.0.weight"])


def test_pretrained_backbone_missing_file_is_an_error(tmp_path: Path):
    with pytest.raises(CheckpointError, match="absent.tar"):
        create_model("featherface_v2", pretrained_backbone=tmp_path / "absent.tar")


@pytest.mark.skipif(not (shared_dir() / "weights" / "retinaface_mnet025_widerface.pth").is_file(),
                    reason="trained RetinaFace weights not available")
def test_trained_retinaface_weights_load():
    model = load_pretrained("retinaface_mnet025", shared_dir() / "weights" / "retinaface_mnet025_widerface.pth")
    assert model.weights_layout == "Pytorch_Retinaface"
    assert n_params(model) == 426_608


def test_declared_one_part_swaps_change_only_their_part():
    from ffcore.models.zoo import ONE_PART_SWAPS, PART_FIELDS

    registered = set(list_models())
    for variant, (base, part) in ONE_PART_SWAPS.items():
        assert variant in registered and base in registered
        before, after = create_model(base).config, create_model(variant).config
        changed = {f.name for f in dataclasses.fields(before) if getattr(before, f.name) != getattr(after, f.name)}
        assert changed == PART_FIELDS[part], variant
