"""The released FeatherFace V1 (trained on WIDER FACE), loaded as published and detecting as the
original pipeline does.

The two shared files hold the 587 tensors of V1 under the original key names plus the 248
`total_ops` / `total_params` counters that `thop.profile` registered during the original training;
those are dropped (and counted), nothing else is relaxed.

The detection oracle is the transcription of the original test script in
`tests/reference_test_pipeline.py`, at the image's original size, then the faces at or above the
display threshold.
"""

from __future__ import annotations

import json
from itertools import product

import numpy as np
import pytest
import torch

from ffcore.checkpoint import CheckpointError
from ffcore.cli import main
from ffcore.paths import shared_dir
from reference_test_pipeline import reference_detections

WEIGHTS = shared_dir() / "weights"
RELEASED = ("featherface_v1_widerface.pth", "featherface_v1_widerface_run2.pth")
PHOTOS = sorted((shared_dir() / "images").glob("*.jpg"))
V1_PARAMETERS = 592_371
needs_released = pytest.mark.skipif(not all((WEIGHTS / f).is_file() for f in RELEASED) or not PHOTOS,
                                    reason="released V1 weights or shared photos absent")


def _published_state_dict(file: str) -> dict[str, torch.Tensor]:
    return torch.load(WEIGHTS / file, map_location="cpu", weights_only=True)


# ----------------------------------------------------------------------------- loading

@needs_released
@pytest.mark.parametrize("file", RELEASED)
def test_released_file_loads_as_published_with_the_profiler_buffers_dropped_and_logged(file, caplog):
    from ffcore.models import load_pretrained

    published = _published_state_dict(file)
    counters = [k for k in published if k.rsplit(".", 1)[-1] in ("total_ops", "total_params")]
    assert "total_ops" in counters and "BboxHead.0.total_ops" in counters     # the top level and any depth
    with caplog.at_level("INFO", logger="ffcore.models"):
        model = load_pretrained("featherface_v1", WEIGHTS / file)
    assert model.weights_layout == "FeatherFace" and model.dropped_profiler_buffers == len(counters) == 248
    assert sum(p.numel() for p in model.parameters()) == V1_PARAMETERS
    assert f"dropped {len(counters)} thop profiling buffers" in caplog.text and file in caplog.text
    # every tensor that is not a counter arrived, unchanged
    assert len(model.state_dict()) == len(published) - len(counters)
    assert torch.equal(model.backbone.stage1[0].conv.weight, published["body.stage1.0.0.weight"])
    assert torch.equal(model.heads.box[2].weight, published["BboxHead.2.conv1x1.weight"])


@needs_released
def test_a_real_extra_or_missing_key_is_still_an_error_naming_it(tmp_path):
    from ffcore.models import load_pretrained

    extra = _published_state_dict(RELEASED[0])
    extra["bifpn.0.p9_w1"] = torch.ones(2)
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): neck\.cells\.0\.p9_w1|bifpn\.0\.p9_w1"):
        load_pretrained("featherface_v1", tmp_path / "extra.pth")

    missing = _published_state_dict(RELEASED[0])
    del missing["ssh1.conv3X3.0.offset_conv.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): context\.levels\.0\.conv3x3\.conv\.offset_conv"):
        load_pretrained("featherface_v1", tmp_path / "missing.pth")

    # a counter-named key that is not one number is not thop's: it is refused like any other
    wrong = _published_state_dict(RELEASED[0])
    wrong["body.total_ops"] = torch.zeros(3)
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): backbone\.total_ops|body\.total_ops"):
        load_pretrained("featherface_v1", tmp_path / "wrong.pth")


# --------------------------------------------------------------- the original pipeline's faces

def _reference_faces(model: torch.nn.Module, image_path, threshold: float) -> np.ndarray:
    """Rows (x1, y1, x2, y2, score, 10 landmark coordinates) of the original pipeline at origin size."""
    dets = reference_detections(model, image_path, origin_size=True)
    return dets[dets[:, 4] >= threshold]


@needs_released
@pytest.mark.slow
@pytest.mark.parametrize("file", RELEASED)
def test_detect_gives_the_original_pipelines_faces_box_for_box(file, tmp_path):
    from ffcore.eval.detect import detect_faces, load_detector
    from ffcore.preprocess import read_image

    torch.set_num_threads(2)
    threshold = 0.5
    model = load_detector("featherface_v1", WEIGHTS / file)
    # every box the test script writes (score > 0.02); the displayed faces are those >= threshold
    every_box = {photo: _reference_faces(model, photo, 0.02) for photo in PHOTOS}
    for photo, shown in product(PHOTOS, (threshold, 0.02)):
        reference = every_box[photo][every_box[photo][:, 4] >= shown]
        assert len(reference) >= 5                  # real faces: a real comparison
        ours = detect_faces(model, read_image(photo), shown)
        assert len(ours) == len(reference), (photo.name, shown)
        np.testing.assert_allclose(ours.boxes.numpy(), reference[:, :4], atol=1e-3, err_msg=photo.name)
        np.testing.assert_allclose(ours.scores.numpy(), reference[:, 4], atol=1e-6, err_msg=photo.name)
        np.testing.assert_allclose(ours.landmarks.numpy(), reference[:, 5:], atol=1e-3, err_msg=photo.name)

    # the command itself, on the folder of photos: its JSON carries the same faces (rounded to 0.01 px)
    out = tmp_path / "json"
    assert main(["detect", "--model", "featherface_v1", "--weights", str(WEIGHTS / file), "--image",
                 str(PHOTOS[0].parent), "--json", str(out), "--threshold", str(threshold)]) == 0
    for photo in PHOTOS:
        records = json.loads((out / f"{photo.stem}.json").read_text())
        reference = every_box[photo][every_box[photo][:, 4] >= threshold]
        assert len(records) == len(reference)
        np.testing.assert_allclose([r["box"] for r in records], reference[:, :4], atol=0.006)
        np.testing.assert_allclose([r["score"] for r in records], reference[:, 4], atol=6e-6)


# ------------------------------------------------------------------ the study: teacher and detector

def test_the_released_v1_is_a_reference_detector_and_a_teacher_of_every_profile_that_distils_from_all():
    from ffcore.runs.plan import REFERENCE_RUNS, WIDERFACE_TEACHERS, model_of_run, trained_on
    from ffcore.runs.profiles import get_profile

    assert REFERENCE_RUNS["featherface_v1_widerface"] == ("featherface_v1", ("weights", RELEASED[0]))
    assert WIDERFACE_TEACHERS["v1_widerface"].shared_weights == ("weights", RELEASED[0])
    assert model_of_run("featherface_v2_distilled_v1_widerface") == "featherface_v2"
    assert trained_on(get_profile("synthetic"), "synthetic", "featherface_v1_widerface").startswith("WIDER FACE")
    assert get_profile("synthetic_seeds").widerface_teachers is None      # every teacher, the released V1 included


def test_teacher_weights_is_a_profile_choice_recorded_in_the_fingerprint(tmp_path, monkeypatch):
    from ffcore.checkpoint import file_sha256
    from ffcore.runs.context import open_study
    from ffcore.runs.plan import planned_run, widerface_teacher_runs
    from ffcore.runs.training import expected_fingerprint

    if not (WEIGHTS / RELEASED[0]).is_file():
        pytest.skip("released V1 weights absent")
    monkeypatch.setenv("FFCORE_RESULTS", str(tmp_path / "results"))
    released = open_study("smoke", data_root=tmp_path / "data", overrides={"teacher_weights": "released"},
                          prepare_data=False)
    job = planned_run(released.profile, "featherface_v2_distilled")
    assert job.depends_on == () and job.teacher.shared_weights == ("weights", RELEASED[0])
    recorded = expected_fingerprint(released, job)
    assert recorded["teacher_weights"] == "released"
    assert recorded["teacher_checkpoint"] == file_sha256(WEIGHTS / RELEASED[0])
    # the released teacher's own run would be the same training: it is not planned twice
    assert "featherface_v2_distilled_v1_widerface" not in widerface_teacher_runs(released.profile)

    trained = open_study("smoke", data_root=tmp_path / "data", prepare_data=False)
    job = planned_run(trained.profile, "featherface_v2_distilled")
    assert trained.profile.teacher_weights == "trained" and job.depends_on == ("featherface_v1",)
    assert "featherface_v2_distilled_v1_widerface" in widerface_teacher_runs(trained.profile)

    wrong = open_study("smoke", data_root=tmp_path / "data", overrides={"teacher_weights": "downloaded"},
                       prepare_data=False)
    with pytest.raises(ValueError, match="teacher_weights 'downloaded' is not one of trained, released"):
        planned_run(wrong.profile, "featherface_v2_distilled")


def _faces(*boxes):
    from ffcore.postprocess import Detections

    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return Detections(boxes, torch.linspace(0.9, 0.6, len(boxes)), torch.zeros(len(boxes), 10))


def test_consensus_keeps_the_faces_a_majority_of_detectors_find_once_each():
    from ffcore.study.detections import consensus_faces

    a = _faces((0, 0, 10, 10), (100, 100, 120, 120), (300, 300, 330, 330))
    b = _faces((1, 1, 11, 11), (300, 301, 330, 331))          # two of a's faces, shifted by a pixel
    c = _faces((0, 0, 10, 11), (500, 500, 520, 520))          # one of a's faces, one of its own
    agreed = consensus_faces([a, b, c], 2)
    # (0, 0) is found by all three, (300, 300) by two: both kept once; (100, 100) and (500, 500) by one
    assert sorted(agreed.boxes[:, 0].tolist()) == [0.0, 300.0]
    assert len(consensus_faces([a, b, c], 3)) == 1 and len(consensus_faces([a, b, c], 1)) == 4
    # one detector's two boxes on one face never vote twice
    assert len(consensus_faces([_faces((0, 0, 10, 10), (0, 0, 10, 10)), _faces()], 2)) == 0


@needs_released
@pytest.mark.slow
def test_real_photo_check_measures_each_real_detector_against_the_others_and_their_consensus(tmp_path, monkeypatch):
    from ffcore.runs.context import open_study
    from ffcore.study.detections import describe_real_photo_check, real_photo_check, real_photo_detections_figure
    from ffcore.runs.plan import reference_runs

    references = reference_runs()
    if len(references) < 3:
        pytest.skip("the three shared WIDER FACE detectors are not all present")
    monkeypatch.setenv("FFCORE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("FFCORE_FIGURES", str(tmp_path / "figures"))
    study = open_study("smoke", data_root=tmp_path / "data", prepare_data=False)
    torch.set_num_threads(2)
    table = real_photo_check(study, runs=[])
    assert "featherface_v1_widerface" in references
    assert set(table["run"]) == set(references) and (table["trained on"].str.startswith("WIDER FACE")).all()
    for run in references:
        rows = table[(table["run"] == run) & (table["image"] == PHOTOS[0].name)]
        others = [ref for ref in references if ref != run]
        assert rows["reference"].tolist() == [*others, f"consensus (2 of {', '.join(others)})"]
    # real detectors agree on most of a crowd's faces: the released V1 finds most of what the others agree on
    v1 = table[(table["run"] == "featherface_v1_widerface") & table["reference"].str.startswith("consensus")]
    assert v1["matched"].sum() >= 0.5 * v1["reference faces"].sum() > 0
    assert "consensus of the others" in describe_real_photo_check(study).data

    figure = real_photo_detections_figure(study)
    assert len([ax for ax in figure.axes if ax.get_title()]) == len(references)
    assert any("FeatherFace V1 (trained on WIDER FACE)" in ax.get_title() for ax in figure.axes)


# ------------------------------------------------------------------- the anchor: reported figures

def test_reported_figures_are_those_the_shared_readme_quotes_with_their_file_and_commit():
    from ffcore.study.released_v1 import reported_figures, reported_spread

    reported = reported_figures()
    assert reported["file"].tolist() == list(RELEASED)
    readme = (shared_dir() / "README.md").read_text()
    for _, row in reported.iterrows():
        line = next(text for text in readme.splitlines() if f"`weights/{row['file']}`" in text)
        assert " / ".join(f"{row[s]:.2f}" for s in ("easy", "medium", "hard")) in line
        assert row["commit"] in line
    spread = reported_spread(reported)
    assert spread == {s: round(abs(reported[s][0] - reported[s][1]), 2) for s in ("easy", "medium", "hard")}


def test_a_malformed_reported_file_names_the_file_and_the_line(tmp_path):
    from ffcore.study.released_v1 import REPORTED_FILE, reported_figures

    bad = tmp_path / "reported.csv"
    lines = REPORTED_FILE.read_text().splitlines()
    bad.write_text("\n".join([lines[0], lines[1], lines[2].replace("75.89", "n/a")]) + "\n")
    with pytest.raises(ValueError, match=r"reported\.csv, line 3: AP easy / medium / hard must be numbers"):
        reported_figures(bad)
    bad.write_text(lines[0].replace(",commit", "") + "\n")
    with pytest.raises(ValueError, match="missing column.*commit"):
        reported_figures(bad)


def test_the_v1_anchor_table_labels_reported_figures_as_reported_and_measures_only_on_widerface(tmp_path, monkeypatch):
    import pandas as pd

    from ffcore.study import released_v1
    from ffcore.runs.context import open_study
    from ffcore.report.display import CAPTION

    monkeypatch.setenv("FFCORE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("FFCORE_FIGURES", str(tmp_path / "figures"))
    synthetic = open_study("smoke", data_root=tmp_path / "data", prepare_data=False)
    table = released_v1.released_v1_anchor_table(synthetic)
    assert table["kind"].tolist() == [released_v1.REPORTED_KIND] * 2 + [released_v1.SPREAD_KIND]
    assert table["commit"].tolist()[:2] == ["a8966ed", "d9c5756"] and table["file"].tolist()[:2] == list(RELEASED)
    assert "not shown" in table.attrs[CAPTION]
    assert (synthetic.tables_dir / "v1_released_anchor.csv").is_file()

    # on WIDER FACE the V1 trained here is measured and shown first, beside the reported figures
    widerface = open_study("full", data_root=tmp_path / "widerface", prepare_data=False)
    measured = pd.DataFrame([{"AP easy %": 90.0, "AP medium %": 88.0, "AP hard %": 70.0, "split": "validation",
                              "images": 3226}])
    monkeypatch.setattr("ffcore.study.evaluation.ap_frame", lambda study, runs: measured)
    table = released_v1.released_v1_anchor_table(widerface)
    assert table["V1"].tolist()[0] == "featherface_v1" and table["kind"][0].startswith("measured here")
    reported = released_v1.reported_figures()["hard"].tolist()
    assert table["AP hard %"].tolist() == [70.0, *reported, round(max(reported) - min(reported), 2)]
    assert "not shown" not in table.attrs[CAPTION]


@needs_released
@pytest.mark.slow
def test_the_readme_reproduction_commands_accept_the_released_weights(tmp_path, capsys):
    # The README's two commands (predict at the original size, then evaluate against the official
    # ground truth) on a WIDER-format tree holding the shared photos.
    ground_truth = shared_dir() / "data" / "widerface_val_gt"
    if not (ground_truth / "wider_face_val.mat").is_file():
        pytest.skip("official WIDER FACE val ground truth absent")
    event = tmp_path / "tree" / "WIDER_val" / "images" / "0--Parade"
    event.mkdir(parents=True)
    listing = []
    for photo in PHOTOS:
        (event / photo.name).write_bytes(photo.read_bytes())
        listing += [f"0--Parade/{photo.name}", "1", "10 10 20 20 0 0 0 0 0 0"]
    (tmp_path / "tree" / "wider_face_split").mkdir()
    (tmp_path / "tree" / "wider_face_split" / "wider_face_val_bbx_gt.txt").write_text("\n".join(listing) + "\n")
    torch.set_num_threads(2)
    out = tmp_path / "pred"
    assert main(["predict", "--model", "featherface_v1", "--weights", str(WEIGHTS / RELEASED[0]), "--data",
                 str(tmp_path / "tree"), "--out", str(out), "--scale", "origin"]) == 0
    meta = json.loads((out / "predictions_meta.json").read_text())
    assert meta["model"] == "featherface_v1" and meta["scale"] == "origin" and meta["detection_caps"] == "none"
    assert "dropped 248 thop profiling buffers" in capsys.readouterr().err
    assert main(["evaluate", "--pred", str(out), "--gt", str(ground_truth)]) == 0
    shown = capsys.readouterr().out
    assert "predictions: featherface_v1 at test scale origin" in shown and "AP (%)" in shown


# ------------------------------------------------------------------------------- ONNX of it

# Real photos cut to odd sizes that no stride divides (the TF-"same" padding and the prior grid
# both depend on the size): (height, width) of a centre crop of each photo.
ODD_CROPS = ((601, 997), (455, 777))


@pytest.fixture(scope="module")
def released_onnx(tmp_path_factory):
    from ffcore.eval.detect import load_detector
    from ffcore.deploy.export import onnx_operators

    if not (WEIGHTS / RELEASED[0]).is_file():
        pytest.skip("released V1 weights absent")
    path = tmp_path_factory.mktemp("released_onnx") / "featherface_v1_released.onnx"
    # `ffcore export` itself, with its own parity check at an odd size (exit code 1 if it failed)
    assert main(["export", "--model", "featherface_v1", "--weights", str(WEIGHTS / RELEASED[0]), "--out", str(path),
                 "--parity-sizes", "333x517"]) == 0
    assert onnx_operators(path).get("DeformConv", 0) == 15    # 3 levels x 5 deformable convolutions: the trained model
    return load_detector("featherface_v1", WEIGHTS / RELEASED[0]), path


def _centre_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return np.ascontiguousarray(image[top:top + height, left:left + width])


@needs_released
@pytest.mark.slow
def test_onnx_of_the_released_weights_matches_pytorch_on_real_photos_of_odd_sizes(released_onnx):
    from ffcore.eval.inference import detect_image
    from ffcore.deploy.export import PARITY_TOLERANCE, compare_outputs
    from ffcore.deploy.runtime import OnnxDetector
    from ffcore.preprocess import read_image

    torch.set_num_threads(2)
    model, path = released_onnx
    onnx = OnnxDetector(path, threads=2)
    for photo, (height, width) in zip(PHOTOS, ODD_CROPS):
        image = _centre_crop(read_image(photo), height, width)
        assert height % 2 and width % 2
        tensor = torch.from_numpy((image.astype(np.float32) - (104, 117, 123)).transpose(2, 0, 1)).unsqueeze(0).float()
        with torch.no_grad():
            reference = model(tensor)[:3]
        report = compare_outputs(reference, onnx(tensor), height, width)
        assert report.passed, report.to_text()
        assert report.max_abs_diff <= PARITY_TOLERANCE
        ours, theirs = detect_image(model, image).above(0.5), detect_image(onnx, image).above(0.5)
        assert len(ours) == len(theirs) >= 3, photo.name
        np.testing.assert_allclose(theirs.boxes.numpy(), ours.boxes.numpy(), atol=1e-2)
        np.testing.assert_allclose(theirs.scores.numpy(), ours.scores.numpy(), atol=1e-4)


@needs_released
@pytest.mark.slow
def test_the_deploy_benchmark_runs_the_released_weights(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    assert main(["bench", "--models", "featherface_v1", "--weights", f"featherface_v1={WEIGHTS / RELEASED[0]}",
                 "--setting", "smoke", "--backends", "torch", "onnx_fp32", "--sizes", "333x517", "--repeats", "1",
                 "--threads", "1", "--out", str(out)]) == 0
    import pandas as pd

    table = pd.read_csv(out)
    assert set(table["backend"]) == {"torch", "onnx_fp32"} and (table["height"] == 333).all()
    assert (table["forward_median_ms"] > 0).all()
    assert "dropped 248 thop profiling buffers" in capsys.readouterr().err


def test_legends_name_the_released_teacher_where_the_profile_distils_from_it():
    from dataclasses import replace

    from ffcore.report.plotting import pretty_name
    from ffcore.runs.plan import teacher_display_name
    from ffcore.runs.profiles import get_profile

    full = get_profile("full")
    assert pretty_name("featherface_v2_distilled", teacher=teacher_display_name(full)).endswith(
        "from FeatherFace V1 (trained on WIDER FACE)")
    assert pretty_name("featherface_v2_distilled", teacher=teacher_display_name(replace(full, teacher_weights="trained"))) \
        == "FeatherFace V2 distilled from FeatherFace V1"
