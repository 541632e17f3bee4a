"""Inference: `ffcore detect` on the shared photos with the trained RetinaFace-MobileNet-0.25,
test scales, flip, and `predict_widerface` / `evaluate_model` on a tiny synthetic WIDER tree."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ffcore.cli import main
from ffcore.eval.detect import detect_faces, draw_detections, load_detector
from ffcore.eval.inference import detect_image, parse_scale, resize_factor, scale_label
from ffcore.paths import shared_dir
from ffcore.preprocess import read_image

WEIGHTS = shared_dir() / "weights" / "retinaface_mnet025_widerface.pth"
IMAGES = shared_dir() / "images"

needs_weights = pytest.mark.skipif(not WEIGHTS.is_file() or not (IMAGES / "crowd.jpg").is_file(),
                                   reason="shared weights or photos absent")


@pytest.fixture(scope="module")
def detector():
    if not WEIGHTS.is_file():
        pytest.skip("shared weights absent")
    torch.set_num_threads(1)
    return load_detector("retinaface_mnet025", WEIGHTS)


def test_scales():
    assert resize_factor(624, 1024, "origin") == 1.0
    assert resize_factor(624, 1024, "vga") == pytest.approx(640 / 1024)
    assert resize_factor(1280, 886, "1600") == pytest.approx(1600 / 1280)
    assert parse_scale("800") == 800 and parse_scale(800) == 800
    assert scale_label("vga", multiscale=True, flip=True) == "vga+ms+flip"
    assert scale_label(1024) == "long1024"
    with pytest.raises(ValueError, match="unknown test scale"):
        parse_scale("big")


@needs_weights
@pytest.mark.parametrize("name, expected", [("crowd.jpg", 27), ("group.jpg", 6)])
def test_detect_counts_match_the_original_pipeline(detector, name, expected):
    image = read_image(IMAGES / name)
    detections = detect_faces(detector, image, threshold=0.5)
    assert len(detections) == expected
    scores = detections.scores.numpy()
    assert np.all(np.diff(scores) <= 0) and scores.min() >= 0.5
    boxes = detections.boxes.numpy()
    height, width = image.shape[:2]
    assert boxes[:, 0].min() > -20 and boxes[:, 2].max() < width + 20 and boxes[:, 3].max() < height + 20
    # landmarks sit inside (or very near) their face box
    points = detections.landmarks.numpy().reshape(-1, 5, 2)
    assert np.all(points[..., 0] > boxes[:, None, 0] - 5) and np.all(points[..., 0] < boxes[:, None, 2] + 5)


@needs_weights
def test_flip_pass_finds_the_same_faces(detector):
    image = read_image(IMAGES / "group.jpg")
    plain = detect_image(detector, image).above(0.5)
    flipped_only = detect_image(detector, np.ascontiguousarray(image[:, ::-1])).above(0.5)
    assert len(flipped_only) == len(plain)
    merged = detect_image(detector, image, flip=True).above(0.5)
    # merging the mirrored pass through NMS keeps one box per face, at the same place
    assert len(merged) == len(plain)
    for box in plain.boxes:
        assert (merged.boxes - box).abs().max(dim=1).values.min() < 6
    # mirrored landmarks come back in anatomical order: left eye left of right eye
    points = merged.landmarks.reshape(-1, 5, 2)
    assert torch.all(points[:, 0, 0] < points[:, 1, 0])


@needs_weights
def test_detect_command_single_image_and_folder(tmp_path):
    out_json, out_png = tmp_path / "crowd.json", tmp_path / "crowd.png"
    assert main(["detect", "--model", "retinaface_mnet025", "--weights", str(WEIGHTS),
                 "--image", str(IMAGES / "group.jpg"), "--json", str(out_json), "--save", str(out_png)]) == 0
    records = json.loads(out_json.read_text())
    assert len(records) == 6
    assert all(len(r["box"]) == 4 and len(r["landmarks"]) == 10 for r in records)
    assert [r["score"] for r in records] == sorted((r["score"] for r in records), reverse=True)
    assert read_image(out_png).shape == read_image(IMAGES / "group.jpg").shape

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((IMAGES / "group.jpg").read_bytes())
    assert main(["detect", "--model", "retinaface_mnet025", "--weights", str(WEIGHTS), "--threshold", "0.9",
                 "--image", str(folder), "--json", str(tmp_path / "js"), "--save", str(tmp_path / "png")]) == 0
    assert (tmp_path / "js" / "a.json").is_file() and (tmp_path / "png" / "a.png").is_file()
    assert all(r["score"] >= 0.9 for r in json.loads((tmp_path / "js" / "a.json").read_text()))


@needs_weights
def test_detect_command_clear_errors(tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    assert main(["detect", "--model", "retinaface_mnet025", "--weights", str(WEIGHTS), "--image", str(broken)]) == 2
    assert "broken.jpg" in capsys.readouterr().out
    foreign = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, foreign)
    assert main(["detect", "--model", "retinaface_mnet025", "--weights", str(foreign),
                 "--image", str(IMAGES / "group.jpg")]) == 2
    message = capsys.readouterr().out
    assert "foreign.pth" in message and "conv.weight" in message


def test_draw_detections_marks_pixels():
    from ffcore.postprocess import Detections

    canvas = np.zeros((100, 100, 3), dtype=np.uint8)
    drawn = draw_detections(canvas, Detections(torch.tensor([[10.0, 10, 60, 60]]), torch.tensor([0.9]),
                                               torch.tensor([[20.0, 30, 50, 30, 35, 40, 25, 50, 45, 50]])))
    assert drawn[60, 30].tolist() == [0, 0, 255] and drawn[35, 10].tolist() == [0, 0, 255]
    assert drawn[30, 20].tolist() == [0, 0, 255] and drawn[80, 80].sum() == 0 and canvas.sum() == 0


@pytest.fixture(scope="module")
def tiny_widerface(tmp_path_factory):
    from ffcore.data.synth import SynthConfig, generate_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic_widerface")
    generate_synthetic_dataset(root, SynthConfig(train_images=1, val_images=3, max_long_side=400))
    return root


@needs_weights
def test_predict_and_evaluate_model_on_synthetic_tree(detector, tiny_widerface, tmp_path):
    from ffcore.eval import load_ground_truth, read_predictions
    from ffcore.eval.predict import METADATA_FILE, evaluate_model, predict_widerface

    run = predict_widerface(detector, tiny_widerface, tmp_path / "pred", scale="vga", progress=False,
                            checkpoint=WEIGHTS)
    meta = json.loads((tmp_path / "pred" / METADATA_FILE).read_text())
    assert meta["model"] == "retinaface_mnet025" and meta["scale"] == "vga" and meta["images"] == 3
    assert meta["checkpoint_sha256"] and meta["postprocess"]["nms_iou"] == 0.4
    gt = load_ground_truth(tiny_widerface / "ground_truth")
    preds = read_predictions(run.out_dir, gt, strict=True)     # one file per listed image
    assert preds.num_boxes == meta["boxes"] > 0

    result = evaluate_model(detector, tiny_widerface, scale="vga", progress=False)   # synthetic data
    assert set(result.ap) == {"easy", "medium", "hard"}
    assert all(0.0 <= v <= 1.0 for v in result.ap.values() if not np.isnan(v))
    assert result["hard"].ap > 0.3      # a trained detector finds most drawn faces
    assert "vga" in result.label


@needs_weights
def test_multiscale_flip_run(detector, tiny_widerface, tmp_path):
    from ffcore.eval.predict import predict_widerface

    run = predict_widerface(detector, tiny_widerface, tmp_path / "ms", scale=320, multiscale=True, flip=True,
                            progress=False, limit=1)
    assert run.metadata["scale_label"] == "long320+ms+flip" and run.metadata["images"] == 1
    assert run.metadata["multiscale_factors"] == [0.5, 1.0, 1.5]
