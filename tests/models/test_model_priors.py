"""Every inference path decodes with the model's own anchors: a 9-anchor head (FeatherFace V2
ViT) through `detect_image`, the benchmark's timed pipeline and an exported ONNX graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ffcore.anchors import DEFAULT_PRIORS, PriorConfig, num_priors
from ffcore.eval.inference import detect_image, model_prior_config
from ffcore.models import create_model
from ffcore.postprocess import postprocess
from ffcore.preprocess import image_to_tensor


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return create_model("featherface_v2_vit").eval()


def test_the_vit_variant_declares_more_than_two_anchors(vit):
    assert model_prior_config(vit).anchors_per_location > DEFAULT_PRIORS.anchors_per_location
    loc, _, _ = vit(torch.zeros(1, 3, 96, 128))[:3]
    assert loc.shape[1] == num_priors(96, 128, vit.prior_config)


def test_detect_image_decodes_with_the_models_priors(vit):
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    got = detect_image(vit, image)
    with torch.inference_mode():
        loc, conf, landm = vit(image_to_tensor(image))[:3]
    expected = postprocess(loc, conf, landm, (96, 128), prior_config=vit.prior_config)[0]
    assert len(got) == len(expected) > 0
    torch.testing.assert_close(got.boxes, expected.boxes)
    torch.testing.assert_close(got.scores, expected.scores)


def test_benchmark_pipeline_times_a_nine_anchor_model(vit):
    from ffcore.bench.runners import _torch_runner
    from ffcore.bench.timing import _time_detector_call

    runner = _torch_runner("featherface_v2_vit", vit)
    assert runner.prior_config == vit.prior_config
    source = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    times = _time_detector_call(runner, source, 96, 96, 1)
    assert len(times) == 3 and all(t >= 0 for t in times)


def test_onnx_detector_reads_the_anchors_stored_at_export(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from ffcore.deploy.export import _write_prior_config
    from ffcore.deploy.runtime import OnnxDetector

    # the smallest graph with the detector's input: the metadata, not the graph, is under test
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["loc"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("loc", TensorProto.FLOAT, [1, 3, 32, 32])])
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert OnnxDetector(path).prior_config == DEFAULT_PRIORS    # nothing recorded: the default two anchors
    nine = PriorConfig(min_sizes=((16, 24, 32), (64, 96, 128), (256, 384, 512)), aspect_ratios=(0.8, 1.0, 1.25))
    _write_prior_config(path, nine)
    assert OnnxDetector(path).prior_config == nine
