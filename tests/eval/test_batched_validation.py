"""Validation inside training, batched by image size (`ffcore.eval.sharded.predict_shard(batch_size=...)`):
the same detections, so the same AP, as image by image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ffcore.paths import shared_dir

TRAINED_WEIGHTS = shared_dir() / "weights" / "retinaface_mnet025_widerface.pth"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from ffcore.data.synth import SynthConfig, ensure_synthetic_dataset

    # three image sizes among 12 validation images: groups of several, of one, and a group cut by the cap
    config = SynthConfig(train_images=1, val_images=12, min_long_side=96, max_long_side=112)
    return ensure_synthetic_dataset(tmp_path_factory.mktemp("val") / "synthetic", config)


def _models():
    from ffcore.models import create_model, load_pretrained

    torch.manual_seed(0)
    models = {"featherface_v2 (untrained)": create_model("featherface_v2").eval()}
    if TRAINED_WEIGHTS.is_file():   # a trained model, so that the AP compared is not near zero
        models["retinaface_mnet025 (WIDER FACE)"] = load_pretrained("retinaface_mnet025", TRAINED_WEIGHTS).eval()
    return models


@pytest.mark.parametrize("scale", ["origin", 80])
def test_batched_validation_gives_the_image_by_image_detections_and_ap(data_root, scale):
    from ffcore.eval.sharded import evaluate_shards, predict_shard
    from ffcore.preprocess import read_image
    from ffcore.eval.predict import validation_index

    shapes = {read_image(e.image_path).shape[:2] for e in validation_index(data_root)}
    assert len(shapes) > 1    # the grouping is exercised
    for label, model in _models().items():
        one_by_one = predict_shard(model, data_root, 0, 1, scale=scale)
        for batch_size in (2, 4):
            batched = predict_shard(model, data_root, 0, 1, scale=scale, batch_size=batch_size)
            assert [(e, n) for e, n, _ in batched] == [(e, n) for e, n, _ in one_by_one]
            for (_, name, ours), (_, _, theirs) in zip(batched, one_by_one):
                np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4, err_msg=f"{label} {name}")
            result, reference = evaluate_shards([batched], data_root), evaluate_shards([one_by_one], data_root)
            assert result.ap == pytest.approx(reference.ap, rel=0, abs=0, nan_ok=True), label   # exactly
