"""The GPU input path, checked on the CPU for equal results: uint8 batches normalised on the device,
MixUp/CutMix batch-wise on the device, host reads every k steps, persistent loader processes;
channels-last and bfloat16 autocast as recorded options."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ffcore.checkpoint import load_checkpoint_file
from ffcore.engine.config import get_preset
from ffcore.engine.supervised import train


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from ffcore.data.synth import TINY_SYNTH, ensure_synthetic_dataset

    return ensure_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "tiny", TINY_SYNTH)


def tiny(root: Path, out: Path, **changes):
    settings = {"image_size": 64, "batch_size": 4, "max_steps_per_epoch": 3, "epochs": 2, "model": "featherface_v2",
                "pretrained_backbone": False, **changes}
    return get_preset("smoke", data_root=str(root), out_dir=str(out), **settings)


def weights(run: Path) -> dict:
    return load_checkpoint_file(run / "last.pt")["state_dict"]


def test_uint8_transform_normalised_on_the_device_equals_the_float_transform(data_root):
    from ffcore.data.transforms import TrainTransform, TrainTransformConfig, normalise_batch
    from ffcore.preprocess import read_image

    image = read_image(sorted(data_root.rglob("*.jpg"))[0])
    targets = np.array([[10, 10, 40, 40, *([20.0] * 10), 1.0]], dtype=np.float32)
    as_float, t_float = TrainTransform(TrainTransformConfig(image_size=96))(image, targets, np.random.default_rng(3))
    as_uint8, t_uint8 = TrainTransform(TrainTransformConfig(image_size=96, normalise=False))(
        image, targets, np.random.default_rng(3))
    assert as_uint8.dtype == np.uint8 and as_uint8.shape == as_float.shape
    on_device = normalise_batch(torch.from_numpy(np.ascontiguousarray(as_uint8))[None])[0]
    assert torch.equal(on_device, torch.from_numpy(as_float))
    assert np.array_equal(t_float, t_uint8)


def test_batch_wise_mixing_equals_mixing_sample_by_sample():
    from ffcore.data.mixing import MixConfig, cutmix_region, mix_batch, partner_indices

    rng_images = torch.Generator().manual_seed(0)
    images = torch.randn(6, 3, 32, 32, generator=rng_images)
    targets = [torch.tensor([[0.1, 0.1, 0.5, 0.5, *([0.3] * 10), 1.0]]) for _ in range(6)]
    config = MixConfig(mixup_probability=0.5, cutmix_probability=0.3, mixup_alpha=0.2)
    mixed = mix_batch(images, targets, config, np.random.default_rng(11))
    # the reference: the same draws, the pixels mixed one sample at a time
    rng = np.random.default_rng(11)
    partner = partner_indices(6, rng)
    draws = rng.uniform(size=6)
    expected = images.clone()
    for i, u in enumerate(draws):
        if u < config.cutmix_probability:
            lam = float(rng.beta(config.cutmix_alpha, config.cutmix_alpha))
            x1, y1, x2, y2 = cutmix_region((32, 32), lam, rng)
            expected[i, :, y1:y2, x1:x2] = images[partner[i], :, y1:y2, x1:x2]
        elif u < config.cutmix_probability + config.mixup_probability:
            lam = float(rng.beta(config.mixup_alpha, config.mixup_alpha))
            expected[i] = lam * images[i] + (1.0 - lam) * images[partner[i]]
    assert set(mixed.methods) >= {"mixup", "cutmix"}
    assert torch.equal(mixed.images, expected)


def test_host_reads_every_k_steps_and_persistent_workers_give_the_same_weights(data_root, tmp_path):
    base = tiny(data_root, tmp_path / "base", mixup_prob=0.5, cutmix_prob=0.3)
    train(base)
    train(replace(base, out_dir=str(tmp_path / "sync"), sync_every_steps=2))
    train(replace(base, out_dir=str(tmp_path / "workers"), workers=2, persistent_workers=True))
    reference = weights(tmp_path / "base")
    for run in ("sync", "workers"):
        other = weights(tmp_path / run)
        assert all(torch.equal(reference[k], other[k]) for k in reference), run
    history = [load_checkpoint_file(tmp_path / run / "last.pt")["history"][-1]["loss"] for run in ("base", "sync")]
    assert history[0] == history[1]


def test_a_non_finite_loss_is_still_caught_when_reading_every_k_steps(data_root, tmp_path, monkeypatch):
    from ffcore.losses import MultiBoxLoss

    calls = {"n": 0}
    original = MultiBoxLoss.forward

    def poisoned(self, *args, **kwargs):
        calls["n"] += 1
        terms = original(self, *args, **kwargs)
        if calls["n"] > 2:         # epoch 1 has two steps; epoch 2's first is read on the host only at its second
            terms["cls"] = terms["cls"] * float("nan")
        return terms

    monkeypatch.setattr(MultiBoxLoss, "forward", poisoned)
    result = train(tiny(data_root, tmp_path / "run", sync_every_steps=2, max_steps_per_epoch=2, batch_size=2))
    assert result.status == "diverged" and result.epochs_completed == 1
    assert load_checkpoint_file(tmp_path / "run" / "last.pt")["epoch"] == 1   # the last good checkpoint


def test_channels_last_and_bfloat16_are_recorded_options(data_root, tmp_path):
    plain = train(tiny(data_root, tmp_path / "plain", epochs=1))
    fast = train(tiny(data_root, tmp_path / "fast", epochs=1, channels_last=True, amp=True, amp_dtype="bfloat16"))
    assert plain.history[-1]["precision"] == "fp32"
    assert fast.history[-1]["precision"] == "amp_bfloat16+channels_last"
    assert load_checkpoint_file(tmp_path / "fast" / "last.pt")["train_config"]["channels_last"] is True
    # not exact (other kernels, 8-bit mantissas), but the same training
    assert fast.history[-1]["loss"] == pytest.approx(plain.history[-1]["loss"], rel=0.1)
    assert get_preset("featherface_paper").channels_last is False and get_preset("v2_thesis").amp is False
