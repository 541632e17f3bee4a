"""The thesis fork's current models (fokouarnaud/FeatherFace f023145): CBAM-exact, ECA-CBAM
sequential and parallel. Parameter counts, parity with the fork's vectors, the trained
ECA-CBAM as a real detector and a real teacher, its training recipe, and attention masks."""

from __future__ import annotations

import dataclasses
import importlib
import sys

import pytest
import torch

from ffcore.models import create_model, list_models, load_pretrained
from ffcore.models.attention import ECA, ECACBAM, ECACBAMParallel, SAM, eca_kernel_size
from ffcore.paths import shared_dir
from support import n_params, vectors

SHARED = shared_dir()
REFERENCE = SHARED / "reference"
FORK_SOURCES = REFERENCE / "original_sources" / "fork_f023145_eca_cbam"
TRAINED_WEIGHTS = SHARED / "weights" / "featherface_eca_cbam_widerface.pth"
FORK_MODELS = {  # name -> (true parameter count, the fork's class in its sources)
    "featherface_cbam_exact": (488_664, "featherface_cbam_exact", "FeatherFaceCBAMExact"),
    "featherface_eca_cbam": (476_345, "featherface_eca_cbam", "FeatherFaceECAcbaM"),
    "featherface_eca_cbam_parallel": (476_345, "featherface_eca_cbam_parallel", "FeatherFaceECAcbaMParallel"),
}
needs_vectors = pytest.mark.skipif(not (REFERENCE / "featherface_eca_cbam_vectors.pt").is_file(),
                                   reason="fork vectors not available")
needs_weights = pytest.mark.skipif(not TRAINED_WEIGHTS.is_file(), reason="fork's trained weights not available")


pytestmark = pytest.mark.usefixtures("one_thread")


def max_abs_diff(first, second) -> float:
    return max(float((a - b).abs().max()) for a, b in zip(first, second))


# ------------------------------------------------------------------------ the parts

@pytest.mark.parametrize("channels, kernel", [(52, 3), (64, 3), (128, 5), (256, 5)])
def test_eca_kernel_follows_the_adaptive_rule(channels, kernel):
    assert eca_kernel_size(channels) == kernel
    assert ECA(channels).conv.weight.shape == (1, 1, kernel)


def test_eca_mask_is_a_1d_conv_across_pooled_channels():
    torch.manual_seed(0)
    eca, x = ECA(8), torch.randn(2, 8, 5, 7)
    pooled = x.mean(dim=(2, 3))                                    # [2, 8]
    w = eca.conv.weight[0, 0]                                      # 3 taps, zero padding at both ends
    padded = torch.nn.functional.pad(pooled, (1, 1))
    expected = torch.sigmoid(w[0] * padded[:, :-2] + w[1] * padded[:, 1:-1] + w[2] * padded[:, 2:])
    assert torch.allclose(eca.mask(x)[:, :, 0, 0], expected, atol=1e-6)


def test_sam_stacks_mean_before_max_and_has_no_batchnorm():
    torch.manual_seed(0)
    sam, x = SAM(), torch.randn(1, 6, 9, 9)
    assert [n for n, _ in sam.named_parameters()] == ["conv.weight"]
    with torch.no_grad():
        sam.conv.weight.zero_()
        sam.conv.weight[0, 0, 3, 3] = 1.0                          # centre tap of the mean channel only
    assert torch.allclose(sam.mask(x)[0, 0], torch.sigmoid(x.mean(dim=1)[0]), atol=1e-6)


def test_sequential_gates_space_after_channels_parallel_from_the_input():
    torch.manual_seed(0)
    sequential, parallel = ECACBAM(16), ECACBAMParallel(16)
    parallel.load_state_dict(sequential.state_dict())
    x = torch.randn(2, 16, 6, 8)
    channel = sequential.eca.mask(x)
    assert torch.allclose(sequential(x), x * channel * sequential.sam.mask(x * channel), atol=1e-6)
    assert torch.allclose(parallel(x), x * channel * sequential.sam.mask(x), atol=1e-6)
    assert not torch.allclose(sequential(x), parallel(x), atol=1e-4)


# ---------------------------------------------------------------------- the models

@pytest.mark.parametrize("name", sorted(FORK_MODELS))
def test_registered_with_exact_parameter_counts_and_part_tables(name):
    from ffcore.complexity import parameter_counts

    assert name in list_models()
    model = create_model(name)
    assert n_params(model) == FORK_MODELS[name][0]
    table = parameter_counts(model).set_index("part")
    assert table.loc["total", "parameters"] == FORK_MODELS[name][0]
    assert table.loc["shuffle", "parameters"] == 0                 # the shuffle alone, no conv/BN
    assert model.config.neck_channels == 52


def test_eca_cbam_attention_costs_a_few_hundred_parameters():
    model = create_model("featherface_eca_cbam")
    # per module: Conv1d k (3 for 64 and 52 channels, 5 for 128 and 256) + SAM's 98
    expected = (3 + 98) + (5 + 98) + (5 + 98) + 3 * (3 + 98)
    attention = n_params(model.backbone_attention) + n_params(model.neck_attention)
    assert attention == expected == 610
    exact = create_model("featherface_cbam_exact")
    assert n_params(exact) - n_params(model) == n_params(exact.backbone_attention) + \
        n_params(exact.neck_attention) - attention


@pytest.mark.parametrize("name, attention", [("featherface_v1_eca_cbam", "eca_cbam"),
                                             ("featherface_v1_eca_cbam_parallel", "eca_cbam_parallel")])
def test_attention_swaps_of_v1_change_only_the_attention(name, attention):
    v1, variant = create_model("featherface_v1").config, create_model(name).config
    changed = {f.name for f in dataclasses.fields(v1) if getattr(v1, f.name) != getattr(variant, f.name)}
    assert changed == {"backbone_attention", "neck_attention"}
    assert variant.backbone_attention == variant.neck_attention == attention
    assert variant.neck_channels == 64
    from ffcore.study.ablations import ablation_models

    assert name in ablation_models()


def test_fork_models_are_declared_as_attention_swaps_of_its_cbam_baseline():
    from ffcore.models.zoo import ONE_PART_SWAPS

    swaps = {variant: part for variant, (base, part) in ONE_PART_SWAPS.items() if base == "featherface_cbam_exact"}
    assert swaps == {"featherface_eca_cbam": "attention", "featherface_eca_cbam_parallel": "attention"}


@needs_vectors
@pytest.mark.parametrize("name", sorted(FORK_MODELS))
def test_parity_with_the_fork_vectors_at_640(name):
    reference = vectors(name)
    model = load_pretrained(name, reference["state_dict"])
    assert model.weights_layout == "FeatherFace fork f023145" and not model.training
    with torch.no_grad():
        outputs = model(reference["A"]["input"])
    assert max_abs_diff(outputs, [reference["A"][k] for k in ("loc", "conf", "landm")]) < 1e-4


@pytest.fixture(scope="module")
def fork_code():
    """The fork's own model classes, imported from the shared sources as an oracle for sizes the
    vectors do not cover (its modules import each other as `models.*`, so they load under that
    package name, which is removed again afterwards)."""
    if not (FORK_SOURCES / "models" / "net.py").is_file():
        pytest.skip("the fork's sources are not available")
    pytest.importorskip("torchvision")
    saved = {k: v for k, v in sys.modules.items() if k == "models" or k.startswith("models.")}
    sys.path.insert(0, str(FORK_SOURCES))
    try:
        yield {name: getattr(importlib.import_module(f"models.{module}"), cls)
               for name, (_, module, cls) in FORK_MODELS.items()}
    finally:
        sys.path.remove(str(FORK_SOURCES))
        for key in [k for k in sys.modules if k == "models" or k.startswith("models.")]:
            del sys.modules[key]
        sys.modules.update(saved)


@needs_vectors
@pytest.mark.parametrize("name", sorted(FORK_MODELS))
def test_parity_with_the_fork_code_at_an_odd_non_square_size(name, fork_code):
    reference = vectors(name)
    original = fork_code[name](cfg=reference["cfg"], phase="train")   # 'train' returns logits, as ffcore
    original.load_state_dict(reference["state_dict"])
    original.eval()
    ours = load_pretrained(name, reference["state_dict"])
    x = reference["A"]["input"][:, :, :333, :517].contiguous()
    with torch.no_grad():
        assert max_abs_diff(original(x), ours(x)) < 1e-4


# ------------------------------------------------------------- the trained detector

@pytest.fixture(scope="module")
def trained_eca_cbam():
    if not TRAINED_WEIGHTS.is_file():
        pytest.skip("fork's trained weights not available")
    return load_pretrained("featherface_eca_cbam", TRAINED_WEIGHTS)


@needs_vectors
def test_released_weights_are_the_vectors_trained_state(trained_eca_cbam):
    reference = vectors("featherface_eca_cbam")["state_dict"]
    ours = trained_eca_cbam.state_dict()
    assert len(ours) == len(reference)
    assert torch.equal(ours["backbone_attention.levels.0.eca.conv.weight"],
                       reference["backbone_attention_0.eca.conv.weight"])
    assert torch.equal(ours["neck_attention.levels.2.sam.conv.weight"], reference["bifpn_attention_2.sam.conv.weight"])


@pytest.mark.parametrize("image, faces", [("crowd.jpg", 24), ("group.jpg", 6)])
def test_trained_eca_cbam_finds_the_fork_pipelines_faces(trained_eca_cbam, image, faces):
    from ffcore.eval.detect import detect_faces
    from ffcore.preprocess import read_image

    detections = detect_faces(trained_eca_cbam, read_image(SHARED / "images" / image), threshold=0.5)
    assert len(detections) == faces
    assert (detections.scores >= 0.5).all() and (detections.boxes[:, 2:] > detections.boxes[:, :2]).all()


def reference_pipeline(loc, conf, priors, width, height, threshold=0.5):
    """The references' test script, transcribed as an oracle: decode with variances (0.1, 0.2), scale to
    pixels, softmax, keep scores > 0.02, top 5000, greedy NMS at IoU 0.4 with the +1 pixel convention,
    top 750, then the display threshold. Returns [n, 5] (x1, y1, x2, y2, score) in float64."""
    import numpy as np

    loc, conf, priors = (t.double().numpy() for t in (loc[0], conf[0], priors))
    centres = priors[:, :2] + loc[:, :2] * 0.1 * priors[:, 2:]
    sizes = priors[:, 2:] * np.exp(loc[:, 2:] * 0.2)
    boxes = np.hstack([centres - sizes / 2, centres + sizes / 2]) * [width, height, width, height]
    scores = np.exp(conf[:, 1]) / np.exp(conf).sum(axis=1)
    keep = scores > 0.02
    boxes, scores = boxes[keep], scores[keep]
    order = scores.argsort()[::-1][:5000]
    boxes, scores = boxes[order], scores[order]
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    remaining, kept = np.arange(len(scores)), []
    while remaining.size:
        i, rest = remaining[0], remaining[1:]
        kept.append(i)
        w = np.maximum(0.0, np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]) + 1)
        h = np.maximum(0.0, np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]) + 1)
        overlap = w * h / (areas[i] + areas[rest] - w * h)
        remaining = rest[overlap <= 0.4]
    dets = np.hstack([boxes, scores[:, None]])[kept][:750]
    return dets[dets[:, 4] >= threshold]


@needs_vectors
@pytest.mark.parametrize("image_name, faces", [("crowd.jpg", 24), ("group.jpg", 6)])
def test_trained_eca_cbam_detects_box_for_box_like_the_fork_pipeline(trained_eca_cbam, fork_code, image_name, faces):
    from ffcore.anchors import make_priors
    from ffcore.eval.detect import detect_faces
    from ffcore.preprocess import image_to_tensor, read_image

    image = read_image(SHARED / "images" / image_name)
    height, width = image.shape[:2]
    original = fork_code["featherface_eca_cbam"](cfg=vectors("featherface_eca_cbam")["cfg"], phase="train")
    original.load_state_dict(torch.load(TRAINED_WEIGHTS, map_location="cpu", weights_only=True))
    original.eval()
    with torch.no_grad():
        loc, conf, _ = original(image_to_tensor(image))
    expected = reference_pipeline(loc, conf, make_priors(height, width), width, height)
    ours = detect_faces(trained_eca_cbam, image, threshold=0.5)
    assert len(expected) == len(ours) == faces
    assert torch.allclose(ours.boxes.double(), torch.from_numpy(expected[:, :4]), atol=1e-3)    # pixels
    assert torch.allclose(ours.scores.double(), torch.from_numpy(expected[:, 4]), atol=1e-4)


def test_detect_command_runs_the_trained_eca_cbam(trained_eca_cbam, tmp_path, capsys):
    import json

    from ffcore.cli import main

    out = tmp_path / "group.json"
    assert main(["detect", "--model", "featherface_eca_cbam", "--weights", str(TRAINED_WEIGHTS),
                 "--image", str(SHARED / "images" / "group.jpg"), "--json", str(out)]) == 0
    assert "6 face(s) with score >= 0.5" in capsys.readouterr().out
    assert len(json.loads(out.read_text())) == 6


# --------------------------------------------------------------- the fork's recipe

def test_fork_eca_cbam_preset_is_the_published_recipe():
    from ffcore.engine import get_preset

    preset = get_preset("fork_eca_cbam")
    assert (preset.model, preset.optimizer, preset.lr, preset.weight_decay) == ("featherface_eca_cbam", "adam",
                                                                                1e-3, 1e-4)
    assert (preset.schedule, preset.restart_epochs, preset.min_lr) == ("cosine_restarts", None, 1e-6)
    assert (preset.epochs, preset.batch_size, preset.image_size, preset.overlap_threshold) == (350, 32, 640, 0.5)
    assert preset.decay_all_parameters


def test_fork_schedule_is_cosine_warm_restarts_stepped_per_epoch():
    from ffcore.engine import get_preset
    from ffcore.engine.schedules import build_optimizer, build_scheduler

    config = get_preset("fork_eca_cbam", epochs=6)
    model = torch.nn.Linear(3, 2)
    optimizer = build_optimizer(model.parameters(), config)
    assert isinstance(optimizer, torch.optim.Adam) and not isinstance(optimizer, torch.optim.AdamW)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-4]    # the bias is decayed too
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=4)
    torch_reference = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=1e-3), T_0=6, eta_min=1e-6)
    for epoch in range(6):
        rates = []
        for _ in range(4):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        assert rates == pytest.approx([torch_reference.get_last_lr()[0]] * 4, rel=1e-9)
        torch_reference.optimizer.step()
        torch_reference.step()


def test_fork_recipe_matches_priors_at_overlap_half():
    from ffcore.engine import get_preset
    from ffcore.engine.supervised import multibox_loss_for

    model = create_model("featherface_eca_cbam")
    assert multibox_loss_for(model, get_preset("fork_eca_cbam")).config.overlap_threshold == 0.5
    assert multibox_loss_for(model, get_preset("featherface_paper")).config.overlap_threshold == 0.35


def test_fork_recipe_trains_with_one_command(tmp_path):
    from ffcore.checkpoint import load_checkpoint_file
    from ffcore.cli import main
    from support import write_tiny_wider_tree

    root = write_tiny_wider_tree(tmp_path / "data", images=8)
    out = tmp_path / "fork"
    assert main(["train", "--preset", "fork_eca_cbam", "--data", str(root), "--out", str(out), "--epochs", "2",
                 "--batch-size", "4", "--image-size", "64", "--max-steps-per-epoch", "2", "--workers", "0",
                 "--device", "cpu", "--pretrained-backbone", "none"]) == 0
    checkpoint = load_checkpoint_file(out / "last.pt")
    assert checkpoint["model_name"] == "featherface_eca_cbam"
    recipe = checkpoint["train_config"]
    assert (recipe["optimizer"], recipe["schedule"], recipe["overlap_threshold"]) == ("adam", "cosine_restarts", 0.5)
    # T_0 follows --epochs: after epoch 1 of 2 the rate is half-way down the cosine, after epoch 2 it restarts
    rates = [row["lr"] for row in checkpoint["history"]]
    assert rates == pytest.approx([1e-6 + (1e-3 - 1e-6) * 0.5, 1e-3], rel=1e-6)


# ----------------------------------------------------------- a real teacher for V2

@needs_weights
def test_distill_from_the_trained_eca_cbam_teacher(tmp_path):
    from ffcore.checkpoint import load_checkpoint_file
    from ffcore.cli import main
    from support import write_tiny_wider_tree

    root = write_tiny_wider_tree(tmp_path / "data", images=8)
    out = tmp_path / "kd"
    assert main(["distill", "--teacher", "featherface_eca_cbam", "--teacher-weights", str(TRAINED_WEIGHTS),
                 "--student", "featherface_v2", "--preset", "smoke", "--data", str(root), "--out", str(out),
                 "--epochs", "1", "--batch-size", "4", "--image-size", "64", "--max-steps-per-epoch", "2"]) == 0
    checkpoint = load_checkpoint_file(out / "last.pt")
    # V2's 32-channel head inputs -> the teacher's 52 channels: one 1x1 conv (with bias) per level
    assert sum(v.numel() for v in checkpoint["distill_adapters"].values()) == 3 * (32 * 52 + 52)
    assert checkpoint["teacher_name"] == "featherface_eca_cbam"
    assert checkpoint["model_name"] == "featherface_v2"


# -------------------------------------------------------------- attention masks

@pytest.mark.parametrize("name, kind", [("featherface_v1", "cbam"), ("featherface_v2", "shared_cbam"),
                                        ("featherface_cbam_exact", "cbam"), ("featherface_eca_cbam", "eca_cbam"),
                                        ("featherface_eca_cbam_parallel", "eca_cbam_parallel")])
def test_attention_masks_are_what_each_module_multiplies_by(name, kind):
    from ffcore.eval.attention_maps import attention_masks

    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.randn(1, 3, 97, 131)
    # the attention parts' real inputs and outputs, to check the masks against
    seen = {}
    handles = [getattr(model, part).register_forward_hook(
        lambda _m, inputs, output, part=part: seen.__setitem__(part, (inputs[0], output)))
        for part in ("backbone_attention", "neck_attention")]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    masks = attention_masks(model, x)
    for handle in handles:
        handle.remove()

    assert [m.position for m in masks] == ["C3", "C4", "C5", "P3", "P4", "P5"]
    assert {m.kind for m in masks} == {kind}
    for index, m in enumerate(masks):
        part = "backbone_attention" if index < 3 else "neck_attention"
        inputs, outputs = seen[part]
        x_level, y_level = inputs[index % 3][0], outputs[index % 3][0]
        assert m.channel.shape == (x_level.shape[0],) and m.spatial.shape == x_level.shape[1:]
        assert ((m.channel > 0) & (m.channel < 1)).all() and ((m.spatial > 0) & (m.spatial < 1)).all()
        gated = x_level * m.combined
        # V1 and V2 add the gated tensor back (ReLU(x + gated)); the fork's modules output it directly
        expected = torch.relu(x_level + gated) if name in ("featherface_v1", "featherface_v2") else gated
        assert torch.allclose(y_level, expected, atol=1e-5)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())     # the model is unchanged
    assert all(not module._forward_hooks for module in model.modules())             # and its hooks are gone


def test_attention_masks_refuse_a_model_without_attention():
    from ffcore.eval.attention_maps import attention_masks

    with pytest.raises(ValueError, match="no attention modules"):
        attention_masks(create_model("retinaface_mnet025"), torch.zeros(1, 3, 64, 64))


# ------------------------------------------------------------------------ the study

@pytest.fixture()
def study(tmp_path, monkeypatch):
    """A smoke-profile study writing into tmp_path, FLOPs counted at 64 px to stay quick."""
    from ffcore.runs.profiles import get_profile
    from ffcore.study import Study

    monkeypatch.setattr("ffcore.runs.context.results_dir", lambda: tmp_path / "results")
    monkeypatch.setattr("ffcore.runs.context.figures_dir", lambda: tmp_path / "figures")
    profile = dataclasses.replace(get_profile("smoke"), flops_size=64)
    return Study(profile=profile, data_root=tmp_path / "data", device="cpu")


def test_fork_training_log_follows_the_fork_recipe():
    from ffcore.engine import get_preset
    from ffcore.engine.schedules import lr_factor
    from ffcore.study.fork_models import read_fork_training_log

    log = read_fork_training_log()
    assert list(log["epoch"]) == list(range(1, 351)) and log["loss"].notna().all()
    assert log["loss"].iloc[-1] < log["loss"].iloc[0]
    # logged after the scheduler's step: row e holds the rate of epoch e + 1 of our schedule
    recipe = get_preset("fork_eca_cbam")
    expected = [recipe.lr * lr_factor(e * 10, 350 * 10, 10, recipe) for e in log["epoch"].iloc[:-1]]
    assert list(log["lr"].iloc[:-1]) == pytest.approx(expected, rel=1e-4)


def test_fork_training_log_figure_is_labelled_as_the_forks_wider_face_run(study):
    import json

    from ffcore.study.fork_models import fork_training_log_figure

    fig = fork_training_log_figure(study)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]   # above the panels, off the curves
    assert labels == ["FeatherFace ECA-CBAM (fork): the fork's WIDER FACE run, commit f023145"]   # no synthetic run
    sidecar = json.loads((study.figures_dir / "fork_training_log.json").read_text())
    assert sidecar["dataset"] == "widerface" and sidecar["notes"]["ours_overlaid"] is False


def test_fork_parameter_table_explains_the_two_049m(study):
    from ffcore.study.fork_models import fork_parameter_table

    table = fork_parameter_table(study).set_index("model")
    assert table.loc["featherface_v1", "parameters"] == 592_371
    assert table.loc["featherface_v1", "thop_parameters"] == 488_661
    assert table.loc["featherface_cbam_exact", "parameters"] == 488_664
    assert table.loc["featherface_eca_cbam", "parameters"] == table.loc["featherface_eca_cbam_parallel",
                                                                         "parameters"] == 476_345
    assert (study.tables_dir / "params_fork_models.csv").is_file()


@needs_weights
def test_attention_maps_figure_draws_one_column_per_module(study):
    from ffcore.study.fork_models import FORK_WEIGHTS_RUN, attention_maps_figure

    fig = attention_maps_figure(study, FORK_WEIGHTS_RUN, image_name="group.jpg")
    assert len(fig.axes) == 6 * 3 + 2   # one column per module, and a colour bar beside each map row
    assert [ax.get_ylabel() for ax in fig.axes[-2:]] == ["M_s", "mean M_c * M_s"]
    assert (study.figures_dir / f"attention_maps_{FORK_WEIGHTS_RUN}.png").is_file()


def test_attention_maps_are_one_compact_grid_a_column_per_module_at_8_points():
    from types import SimpleNamespace

    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from ffcore.report.plotting import TEXT_WIDTH
    from ffcore.study.fork_models import ATTENTION_FONT_POINTS, draw_attention_grid

    masks = [SimpleNamespace(channel=torch.rand(8), spatial=torch.rand(10, 16), combined=torch.rand(8, 10, 16),
                             position=p, kind="cbam") for p in ("C3", "C4", "C5", "P3", "P4", "P5")]
    fig = draw_attention_grid(np.zeros((624, 1024, 3), dtype=np.uint8), masks, "Attention masks on crowd.jpg")
    try:
        width, height = fig.get_size_inches()
        assert width == TEXT_WIDTH and height < 0.6 * width     # a third of a page, not a page of one column
        panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        assert len(panels) == 3 * len(masks)
        sizes = [t.get_fontsize() for t in fig.findobj(match=lambda o: hasattr(o, "get_fontsize") and
                                                        hasattr(o, "get_text") and o.get_text())]
        assert min(sizes) >= ATTENTION_FONT_POINTS >= 8
    finally:
        plt.close(fig)
