"""The V2 recipe of 003_v2_technical_report.md, method by method, and the originals' optimiser details.

- DropBlock (block 3, drop probability 0.1) in featherface_v2 only: whole blocks at the
  stated rate in training, the identity in eval, no weights;
- MixUp's lam reaches the loss as per-face weights; CutMix on half the samples;
- progressive distillation: the written schedule drives the feature term;
- weight decay on every parameter by default (1-D parameters excluded only on request);
- FP32 unless mixed precision is asked for, and the precision is recorded.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ffcore.engine import get_preset
from ffcore.engine.config import TRAINING_PRESETS, TrainConfig
from ffcore.engine.supervised import train
from ffcore.engine.schedules import build_optimizer
from ffcore.models import create_model
from ffcore.models.blocks import DropBlock2d
from support import tiny_config, write_tiny_wider_tree


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------- DropBlock

def test_dropblock_drops_whole_blocks_at_the_stated_rate_in_training():
    torch.manual_seed(0)
    block = DropBlock2d(drop_prob=0.1, block_size=3).train()
    x = torch.ones(32, 16, 20, 20)
    y = block(x)
    dropped = y == 0
    # every dropped unit lies in a 3 x 3 square of dropped units (a whole block)
    full_squares = (F.avg_pool2d(dropped.float(), 3, stride=1) > 1 - 1e-6).float()     # top-left corners
    in_full_block = F.max_pool2d(F.pad(full_squares, [2, 2, 2, 2]), 3, stride=1) > 0
    assert (dropped <= in_full_block).all()
    # the share of dropped units is the one the block-start rate implies, which overlaps of
    # blocks keep a little under the nominal 0.1
    expected = block.expected_drop_fraction(20, 20)
    assert 0.09 < expected < 0.1
    standard_error = (expected * (1 - expected) / dropped.numel() * 9) ** 0.5   # blocks of 9 correlated units
    assert abs(dropped.float().mean().item() - expected) < 4 * standard_error
    # kept units are rescaled so the expected activation is unchanged
    kept = y[~dropped]
    torch.testing.assert_close(kept, torch.full_like(kept, dropped.numel() / (~dropped).sum().item()))


def test_dropblock_is_the_identity_in_eval_and_at_zero_probability():
    x = torch.randn(2, 8, 10, 10)
    assert DropBlock2d(0.1, 3).eval()(x) is x
    assert DropBlock2d(0.0, 3).train()(x) is x


def test_dropblock_block_shrinks_to_maps_smaller_than_the_block():
    torch.manual_seed(1)
    y = DropBlock2d(0.5, 3).train()(torch.ones(64, 4, 2, 2))
    per_map = (y == 0).flatten(2).all(dim=2) | (y != 0).flatten(2).all(dim=2)
    assert per_map.all()       # a 2 x 2 map is dropped whole or kept whole


def test_dropblock_rejects_bad_settings():
    with pytest.raises(ValueError, match="drop_prob"):
        DropBlock2d(1.0, 3)
    with pytest.raises(ValueError, match="block_size"):
        DropBlock2d(0.1, 0)


def test_featherface_v2_trains_with_dropblock_and_only_v2_does():
    v2 = create_model("featherface_v2")
    assert isinstance(v2.dropblock, DropBlock2d)
    assert (v2.dropblock.drop_prob, v2.dropblock.block_size) == (0.1, 3)
    for name in ("featherface_v1", "retinaface_mnet025", "featherface_v1_shared_cbam"):
        assert create_model(name).dropblock is None, name


def test_dropblock_changes_training_outputs_only():
    torch.manual_seed(0)
    with_block = create_model("featherface_v2")
    without = create_model("featherface_v2", dropblock_prob=0.0)
    assert with_block.state_dict().keys() == without.state_dict().keys()     # no weights of its own
    without.load_state_dict(with_block.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(with_block.eval()(x), without.eval()(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.manual_seed(3)
        trained_a = with_block.train()(x)
        torch.manual_seed(3)
        trained_b = without.train()(x)
    assert not torch.allclose(trained_a[1], trained_b[1])


# ------------------------------------------------------------------------------- MixUp / CutMix

def test_v2_thesis_mixes_half_the_samples_with_cutmix_and_the_rest_with_mixup():
    from ffcore.engine.trainer import Trainer

    thesis = get_preset("v2_thesis")
    assert (thesis.cutmix_prob, thesis.mixup_prob, thesis.mixup_alpha) == (0.5, 0.5, 0.2)
    mix = Trainer._mix_config(type("T", (), {"config": thesis})())
    assert (mix.cutmix_probability, mix.mixup_probability, mix.mixup_alpha) == (0.5, 0.5, 0.2)


def test_the_trainer_hands_mixups_lam_to_the_loss(tmp_path, monkeypatch):
    """With MixUp on every sample, each face reaches the loss weighted by its image's share."""
    from ffcore.losses import MultiBoxLoss

    seen = []
    original = MultiBoxLoss.forward

    def recording(self, predictions, priors, targets, target_weights=None):
        seen.append((targets, target_weights))
        return original(self, predictions, priors, targets, target_weights)

    monkeypatch.setattr(MultiBoxLoss, "forward", recording)
    root = write_tiny_wider_tree(tmp_path / "data", images=8)
    train(tiny_config(root, tmp_path / "run", epochs=1, mixup_prob=1.0)).raise_for_status()
    assert seen
    for targets, weights in seen:
        assert weights is not None and len(weights) == len(targets)
        for faces, w in zip(targets, weights):
            assert w.shape == (faces.shape[0],)
            lam = float(w[0])
            assert set(np.round(w.tolist(), 6)) <= {round(lam, 6), round(1 - lam, 6)}


# ----------------------------------------------------------------------- progressive distillation

def test_progressive_distillation_preset_and_schedule():
    from ffcore.engine.distill import DISTILL_PRESETS, DistillationTask, progressive_levels

    assert not DISTILL_PRESETS["v2_thesis"].progressive and DISTILL_PRESETS["v2_thesis_progressive"].progressive
    levels = [progressive_levels(epoch, 9) for epoch in range(9)]
    assert levels == [(2,)] * 3 + [(1, 2)] * 3 + [(0, 1, 2)] * 3
    task = DistillationTask.__new__(DistillationTask)
    task.config, task.feature_levels = DISTILL_PRESETS["v2_thesis_progressive"], None
    task.begin_epoch(0, 9)
    assert task.feature_levels == (2,)
    task.begin_epoch(8, 9)
    assert task.feature_levels == (0, 1, 2)


def test_the_trainer_tells_the_task_each_epoch(tmp_path, monkeypatch):
    """The schedule is a function of the epoch alone, called before each epoch (resume included)."""
    from ffcore.engine.supervised import DetectionTask

    calls = []
    monkeypatch.setattr(DetectionTask, "begin_epoch", lambda self, epoch, epochs: calls.append((epoch, epochs)),
                        raising=False)
    root = write_tiny_wider_tree(tmp_path / "data", images=8)
    config = tiny_config(root, tmp_path / "run", epochs=3, max_steps_per_epoch=1)
    train(replace(config, stop_after_epoch=2)).raise_for_status()
    train(config, resume=True).raise_for_status()
    assert calls == [(0, 3), (1, 3), (2, 3)]


# --------------------------------------------------------------------------------- weight decay

def _optimiser_after_one_step(config: TrainConfig):
    """AdamW with zero gradients moves a parameter only by its decoupled decay: p <- p (1 - lr wd)."""
    torch.manual_seed(0)
    model = create_model("featherface_v2")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = build_optimizer(model.parameters(), config)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    return before, dict(model.named_parameters())


@pytest.mark.parametrize("name", ["featherface_paper", "retinaface_paper", "v2_thesis"])
def test_every_parameter_is_decayed_by_default(name):
    preset = get_preset(name)
    assert preset.decay_all_parameters
    optimizer = build_optimizer(create_model("featherface_v2").parameters(), preset)
    assert {g["weight_decay"] for g in optimizer.param_groups} == {preset.weight_decay}


def test_norms_biases_and_fusion_weights_are_excluded_only_on_request():
    config = replace(get_preset("v2_thesis"), lr=0.1, weight_decay=0.5)
    factor = 1 - config.lr * config.weight_decay
    one_dimensional = ["backbone.stage1.0.bn.weight", "heads.levels.0.cls.bias",
                       "neck.cells.0.p4_td_weights"]
    before, after = _optimiser_after_one_step(config)
    for name in one_dimensional + ["backbone.stage1.0.conv.weight"]:
        torch.testing.assert_close(after[name].detach(), before[name] * factor)
    before, after = _optimiser_after_one_step(replace(config, decay_all_parameters=False))
    for name in one_dimensional:
        torch.testing.assert_close(after[name].detach(), before[name])
    torch.testing.assert_close(after["backbone.stage1.0.conv.weight"].detach(),
                               before["backbone.stage1.0.conv.weight"] * factor)


def test_older_checkpoints_keep_the_recipe_they_ran():
    saved = get_preset("v2_thesis").to_dict()
    for key in ("decay_all_parameters", "cutmix_prob"):
        del saved[key]
    legacy = TrainConfig.from_dict(saved)
    assert legacy.decay_all_parameters is False                   # 1-D parameters were never decayed then
    assert (legacy.mixup_prob, legacy.cutmix_prob) == (0.25, 0.25)  # "half the batches, MixUp or CutMix"


# ------------------------------------------------------------------------------------ precision

@pytest.mark.parametrize("name", sorted(TRAINING_PRESETS))
def test_presets_train_in_fp32(name):
    assert get_preset(name).amp is False


def test_precision_is_recorded_per_epoch_and_in_the_checkpoint(tmp_path):
    from ffcore.checkpoint import load_checkpoint_file

    root = write_tiny_wider_tree(tmp_path / "data", images=8)
    # amp asks for float16 autocast, which runs on CUDA only: on a CPU the run says fp32
    device_amp = torch.cuda.is_available()
    config = tiny_config(root, tmp_path / "run", epochs=1, amp=True, device="cuda" if device_amp else "cpu")
    result = train(config).raise_for_status()
    expected = "amp_float16" if device_amp else "fp32"
    assert [row["precision"] for row in result.history] == [expected]
    checkpoint = load_checkpoint_file(result.last_checkpoint)
    assert checkpoint["precision"] == expected and checkpoint["train_config"]["amp"] is True


def test_command_line_asks_for_mixed_precision_cutmix_and_progressive_distillation(tmp_path):
    from ffcore.checkpoint import load_checkpoint_file
    from ffcore.cli import build_parser, main

    root = write_tiny_wider_tree(tmp_path / "data", images=8)
    out = tmp_path / "cli"
    assert main(["train", "--preset", "smoke", "--data", str(root), "--out", str(out), "--image-size", "64",
                 "--max-steps-per-epoch", "1", "--epochs", "1", "--amp", "--cutmix-prob", "0.5",
                 "--device", "cpu"]) == 0
    checkpoint = load_checkpoint_file(out / "last.pt")
    assert checkpoint["train_config"]["amp"] is True and checkpoint["train_config"]["cutmix_prob"] == 0.5
    assert checkpoint["precision"] == "fp32"          # float16 autocast exists on CUDA only
    distill_args = build_parser().parse_args(["distill", "--teacher", "featherface_v1", "--teacher-weights", "t.pt",
                                              "--out", str(tmp_path / "d"), "--progressive"])
    assert distill_args.progressive is True
