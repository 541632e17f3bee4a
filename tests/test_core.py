"""Priors, box coding, post-processing, checkpoints, provenance and the CLI shell."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from ffcore.anchors import PriorConfig, feature_map_sizes, make_priors, num_priors
from ffcore.boxes import (center_size, decode, decode_landmarks, encode, encode_landmarks, point_form)
from ffcore.checkpoint import CheckpointError, load_checkpoint_file, save_checkpoint
from ffcore.postprocess import PostprocessConfig, postprocess
from ffcore.preprocess import ImageReadError, image_to_tensor, read_image


def test_priors_count_and_order_at_640():
    priors = make_priors(640, 640)
    assert priors.shape == (16800, 4) == (num_priors(640, 640), 4)
    # first level, row 0, col 0: both anchor sizes at the first cell centre
    assert torch.allclose(priors[0], torch.tensor([4 / 640, 4 / 640, 16 / 640, 16 / 640]))
    assert torch.allclose(priors[1], torch.tensor([4 / 640, 4 / 640, 32 / 640, 32 / 640]))
    # next column comes next (row-major, anchors innermost)
    assert torch.allclose(priors[2, :2], torch.tensor([12 / 640, 4 / 640]))
    # the last prior is the last cell of the stride-32 level with the 512 anchor
    assert torch.allclose(priors[-1], torch.tensor([(19 + 0.5) * 32 / 640, (19 + 0.5) * 32 / 640, 512 / 640, 512 / 640]))


def test_priors_on_odd_sizes_use_ceil_grid_and_are_not_clipped():
    height, width = 683, 1024
    sizes = feature_map_sizes(height, width)
    assert sizes == [(math.ceil(683 / 8), 128), (math.ceil(683 / 16), 64), (math.ceil(683 / 32), 32)]
    priors = make_priors(height, width)
    assert priors.shape[0] == sum(r * c * 2 for r, c in sizes)
    assert priors[:, 2:].max() > 0.7  # 512 / 683: large anchors are not clipped
    assert make_priors(height, width, PriorConfig(clip=True)).max() <= 1.0


def test_encode_decode_round_trip():
    generator = torch.Generator().manual_seed(0)
    priors = make_priors(64, 96)
    centres = torch.rand(priors.shape[0], 2, generator=generator)
    sizes = torch.rand(priors.shape[0], 2, generator=generator) * 0.5 + 0.01
    boxes = point_form(torch.cat([centres, sizes], dim=1))
    assert torch.allclose(center_size(boxes), torch.cat([centres, sizes], dim=1), atol=1e-6)
    assert torch.allclose(decode(encode(boxes, priors), priors), boxes, atol=1e-5)
    landmarks = torch.rand(priors.shape[0], 10, generator=generator)
    assert torch.allclose(decode_landmarks(encode_landmarks(landmarks, priors), priors), landmarks, atol=1e-5)


def test_encode_matches_specified_formula():
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.1]])
    box = torch.tensor([[0.45, 0.48, 0.65, 0.58]])  # centre (0.55, 0.53), size (0.2, 0.1)
    expected = torch.tensor([[(0.55 - 0.5) / (0.1 * 0.2), (0.53 - 0.5) / (0.1 * 0.1), 0.0, 0.0]])
    assert torch.allclose(encode(box, prior), expected, atol=1e-5)


def _outputs_with_faces(priors, face_indices, score_logit=6.0):
    loc = torch.zeros(1, priors.shape[0], 4)
    landm = torch.zeros(1, priors.shape[0], 10)
    conf = torch.zeros(1, priors.shape[0], 2)
    conf[..., 0] = 4.0  # background everywhere
    for index in face_indices:
        conf[0, index] = torch.tensor([0.0, score_logit])
    return loc, conf, landm


def test_postprocess_decodes_to_pixels_and_suppresses_duplicates():
    height, width = 64, 96
    priors = make_priors(height, width)
    # prior 0 and prior 2 are neighbouring 16-px anchors 8 px apart (IoU 1/3 < 0.4: both kept);
    # prior 1 is the 32-px anchor at the same centre as prior 0 (IoU 0.25 with it: kept too)
    loc, conf, landm = _outputs_with_faces(priors, [0, 2])
    (dets,) = postprocess(loc, conf, landm, (height, width))
    assert len(dets) == 2
    assert torch.allclose(dets.boxes[0], torch.tensor([-4.0, -4.0, 12.0, 12.0]), atol=1e-4)
    assert torch.allclose(dets.landmarks[0], torch.tensor([4.0, 4.0] * 5), atol=1e-4)
    # a resize factor maps back to original pixels
    (half,) = postprocess(loc, conf, landm, (height, width), resize=0.5)
    assert torch.allclose(half.boxes, dets.boxes * 2, atol=1e-4)
    # two identical boxes: NMS keeps one
    loc2, conf2, landm2 = _outputs_with_faces(priors, [0])
    conf2[0, 0] = torch.tensor([0.0, 5.0])
    loc2 = torch.cat([loc2, loc2[:, :1]], dim=1)
    conf2 = torch.cat([conf2, conf2[:, :1]], dim=1)
    landm2 = torch.cat([landm2, landm2[:, :1]], dim=1)
    priors2 = torch.cat([priors, priors[:1]], dim=0)
    (single,) = postprocess(loc2, conf2, landm2, (height, width), priors=priors2)
    assert len(single) == 1


def test_postprocess_respects_thresholds_and_top_k():
    priors = make_priors(64, 64)
    loc, conf, landm = _outputs_with_faces(priors, list(range(0, priors.shape[0], 7)))
    (dets,) = postprocess(loc, conf, landm, (64, 64), config=PostprocessConfig(keep_top_k=3))
    assert len(dets) == 3
    assert torch.all(dets.scores[:-1] >= dets.scores[1:])
    (none,) = postprocess(loc, conf, landm, (64, 64), config=PostprocessConfig(score_threshold=0.999))
    assert len(none) == 0
    records = dets.above(0.5).to_records()
    assert set(records[0]) == {"box", "score", "landmarks"} and len(records[0]["landmarks"]) == 10


def test_image_reading_errors_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="missing.jpg"):
        read_image(tmp_path / "missing.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        read_image(broken)
    tensor = image_to_tensor(np.full((4, 5, 3), 120, dtype=np.uint8))
    assert tensor.shape == (1, 3, 4, 5)
    assert torch.allclose(tensor[0, :, 0, 0], torch.tensor([16.0, 3.0, -3.0]))


def test_checkpoint_is_written_atomically_and_read_back(tmp_path):
    path = save_checkpoint(tmp_path / "run" / "last.pt", {"model_name": "x", "state_dict": {"w": torch.ones(2)}})
    loaded = load_checkpoint_file(path)
    assert loaded["format"] == "ffcore-checkpoint" and loaded["model_name"] == "x"
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    with pytest.raises(CheckpointError, match="nothing.pt"):
        load_checkpoint_file(tmp_path / "nothing.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint_file(tmp_path / "bad.pt")


def test_tables_and_figures_carry_provenance(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ffcore.report.provenance import Provenance, write_figure, write_table

    provenance = Provenance(profile="smoke", dataset="synthetic", checkpoints={"v1": "abc123"})
    paths = write_table(pd.DataFrame({"model": ["a_b"], "params": [1.5]}), tmp_path, "t", provenance,
                        caption="Parameters", headline="a: 1.5")
    assert "SYNTHETIC DATA" in paths["csv"].read_text().splitlines()[0]
    # the underscore escaped, with a break point after it so long names wrap in narrow columns
    assert "SYNTHETIC DATA" in paths["tex"].read_text() and "a\\_\\allowbreak{}b" in paths["tex"].read_text()
    sidecar = json.loads(paths["json"].read_text())
    assert sidecar["dataset"] == "synthetic" and sidecar["checkpoints"] == {"v1": "abc123"}
    assert {"commit", "dirty"} <= set(sidecar["git"]) and sidecar["headline"] == "a: 1.5"
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    fig_paths = write_figure(fig, tmp_path, "f", provenance)
    assert fig_paths["pdf"].stat().st_size > 0 and fig_paths["png"].stat().st_size > 0
    assert any("SYNTHETIC" in text.get_text() for text in fig.texts)
    plt.close(fig)


def test_each_kind_of_data_has_its_own_label():
    from ffcore.report.provenance import NO_DATA, REAL_PHOTOS, SYNTHETIC, WIDERFACE, Provenance

    labels = {kind: Provenance(profile="synthetic", dataset=kind).label() for kind in (SYNTHETIC, WIDERFACE, REAL_PHOTOS)}
    assert labels[SYNTHETIC].startswith("SYNTHETIC DATA") and labels[WIDERFACE].startswith("WIDER FACE")
    assert labels[REAL_PHOTOS].startswith("REAL PHOTOS") and "not a WIDER FACE evaluation" in labels[REAL_PHOTOS]
    assert Provenance(profile="smoke", dataset=NO_DATA).label().startswith("no data")


def test_cli_help_lists_every_command(capsys):
    from ffcore.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("params", "synth", "train", "distill", "predict", "evaluate", "detect", "export", "bench"):
        assert command in out
