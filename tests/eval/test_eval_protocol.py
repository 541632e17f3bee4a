"""The WIDER FACE protocol: a literal transcription of the spec as the oracle, hand-checked cases,
the real ground truth, prediction-file reading and the `ffcore evaluate` command."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from ffcore.eval import (GroundTruth, GroundTruthError, MissingPredictionsWarning, PredictionFileError,
                         evaluate, load_ground_truth, read_predictions, recall_by_face_size, voc_ap)
from ffcore.eval.predictions import format_prediction_file, write_prediction_file
from ffcore.paths import shared_dir

GT_DIR = shared_dir() / "data" / "widerface_val_gt"


# ---------------------------------------------------------------------------------------------
# Oracle: reference/WIDERFACE_EVAL.md step by step, loops and all (slow; small data only).
# ---------------------------------------------------------------------------------------------
def reference_protocol(per_image_preds, per_image_gt, per_image_keep):
    """per_image_preds: list of [k, 5] lists (x, y, w, h, score) in file order; per_image_gt: list
    of [n, 4]; per_image_keep: list of 1-based kept indices. Returns (ap, precision, recall)."""
    # 1. sort each image by descending score (stable)
    preds = []
    for boxes in per_image_preds:
        boxes = [list(map(float, b)) for b in boxes]
        order = sorted(range(len(boxes)), key=lambda i: -boxes[i][4])
        preds.append([boxes[i] for i in order])
    # 2. one min-max over the whole dataset
    all_scores = [b[4] for boxes in preds for b in boxes]
    if all_scores:
        lo, hi = min(all_scores), max(all_scores)
        for boxes in preds:
            for b in boxes:
                b[4] = (b[4] - lo) / (hi - lo) if hi > lo else 1.0
    proposals_sum = [0.0] * 1000
    tp_sum = [0.0] * 1000
    count_face = 0
    for boxes, gt, keep in zip(preds, per_image_gt, per_image_keep):
        # 3.
        count_face += len(keep)
        if len(gt) == 0 or len(boxes) == 0:
            continue
        ignore = [0] * len(gt)
        for k in keep:
            ignore[k - 1] = 1
        # 4. corners and +1 IoU
        def iou(p, g):
            px1, py1, px2, py2 = p[0], p[1], p[0] + p[2], p[1] + p[3]
            gx1, gy1, gx2, gy2 = g[0], g[1], g[0] + g[2], g[1] + g[3]
            iw = min(px2, gx2) - max(px1, gx1) + 1
            ih = min(py2, gy2) - max(py1, gy1) + 1
            if iw > 0 and ih > 0:
                ua = (px2 - px1 + 1) * (py2 - py1 + 1) + (gx2 - gx1 + 1) * (gy2 - gy1 + 1) - iw * ih
                return iw * ih / ua
            return 0.0
        # 5. greedy, no fallback
        recall_list = [0] * len(gt)
        proposal_list = [1] * len(boxes)
        pred_recall = [0] * len(boxes)
        for h, p in enumerate(boxes):
            overlaps = [iou(p, g) for g in gt]
            best = max(range(len(gt)), key=lambda j: (overlaps[j], -j))
            if overlaps[best] >= 0.5:
                if ignore[best] == 0:
                    recall_list[best] = -1
                    proposal_list[h] = -1
                elif recall_list[best] == 0:
                    recall_list[best] = 1
            pred_recall[h] = sum(1 for r in recall_list if r == 1)
        # 6. thresholds
        for t in range(1000):
            thr = 1 - (t + 1) / 1000
            above = [i for i, p in enumerate(boxes) if p[4] >= thr]
            if not above:
                continue
            r = above[-1]
            proposals_sum[t] += sum(1 for i in range(r + 1) if proposal_list[i] == 1)
            tp_sum[t] += pred_recall[r]
    # 7.
    precision = [tp / pr if pr else float("nan") for tp, pr in zip(tp_sum, proposals_sum)]
    recall = [tp / count_face if count_face else float("nan") for tp in tp_sum]
    # 8. VOC all-point, MATLAB max (NaN ignored)
    mrec = [0.0] + recall + [1.0]
    mpre = [0.0] + precision + [0.0]
    def matlab_max(a, b):   # MATLAB's max ignores a NaN operand
        if np.isnan(a):
            return b
        if np.isnan(b):
            return a
        return max(a, b)

    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = matlab_max(mpre[i], mpre[i + 1])
    ap = 0.0
    for i in range(len(mrec) - 1):
        if mrec[i + 1] != mrec[i]:
            ap += (mrec[i + 1] - mrec[i]) * mpre[i + 1]
    return ap, np.array(precision), np.array(recall)


def make_ground_truth(per_image_gt, keeps: dict[str, list], events=None) -> GroundTruth:
    n = len(per_image_gt)
    counts = [len(g) for g in per_image_gt]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    boxes = np.concatenate([np.asarray(g, dtype=np.float64).reshape(-1, 4) for g in per_image_gt])
    kept = {}
    for setting, per_image_keep in keeps.items():
        mask = np.zeros(len(boxes), dtype=bool)
        for i, k in enumerate(per_image_keep):
            mask[offsets[i] + np.asarray(k, dtype=np.int64) - 1] = True
        kept[setting] = mask
    return GroundTruth(events=tuple(events or ["0--Event"] * n), names=tuple(f"img_{i}" for i in range(n)),
                       boxes=boxes, offsets=offsets, kept=kept)


def as_mapping(gt: GroundTruth, per_image_preds) -> dict:
    return {(gt.events[i], gt.names[i]): np.asarray(p, dtype=np.float64).reshape(-1, 5)
            for i, p in enumerate(per_image_preds)}


def check_against_reference(per_image_preds, per_image_gt, per_image_keep):
    gt = make_ground_truth(per_image_gt, {"hard": per_image_keep})
    result = evaluate(as_mapping(gt, per_image_preds), gt, settings=("hard",))
    ap, precision, recall = reference_protocol(per_image_preds, per_image_gt, per_image_keep)
    assert result["hard"].ap == pytest.approx(ap, abs=1e-9, nan_ok=True)
    np.testing.assert_allclose(result["hard"].precision, precision, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(result["hard"].recall, recall, atol=1e-12, equal_nan=True)
    return result


# ---------------------------------------------------------------------------------------------
# Hand-checked cases
# ---------------------------------------------------------------------------------------------
FACE_A = [10, 10, 20, 20]
FACE_B = [100, 100, 30, 30]


def test_perfect_single_detection_gives_ap_one():
    result = check_against_reference([[FACE_A + [0.9]]], [[FACE_A]], [[1]])
    assert result["hard"].ap == pytest.approx(1.0)


def test_duplicate_detection_stays_false_positive_no_fallback():
    # Two boxes on face A (best = A for both), none on face B: the second one is a false
    # positive even though face B is unmatched (no fallback to the second-best face).
    preds = [[FACE_A + [0.9], [11, 11, 20, 20, 0.8]]]
    result = check_against_reference(preds, [[FACE_A, FACE_B]], [[1, 2]])
    final = result["hard"]
    assert final.true_positives[-1] == 1 and final.proposals[-1] == 2
    # min-max: scores become 1.0 and 0.0; recall 1/2 reached at precision 1 -> AP 0.5
    assert final.ap == pytest.approx(0.5)


def test_detection_on_ignored_face_is_neither_tp_nor_fp():
    preds = [[FACE_B + [0.95], FACE_A + [0.5]]]   # B is ignored (not in keep list)
    result = check_against_reference(preds, [[FACE_A, FACE_B]], [[1]])
    final = result["hard"]
    assert final.proposals[-1] == 1 and final.true_positives[-1] == 1
    assert final.num_faces == 1
    # the top threshold only sees the ignored hit: 0 proposals -> NaN precision, AP still 1
    assert np.isnan(final.precision[0])
    assert final.ap == pytest.approx(1.0)


def test_best_iou_over_all_faces_picks_ignored_face_even_if_kept_one_overlaps():
    # The box overlaps the kept face A with IoU >= 0.5 but the ignored face C more: dropped.
    face_c = [12, 12, 20, 20]
    preds = [[[12, 12, 20, 20, 0.9]]]
    result = check_against_reference(preds, [[FACE_A, face_c]], [[1]])
    assert result["hard"].true_positives[-1] == 0 and result["hard"].proposals[-1] == 0
    assert result["hard"].ap == 0.0


def test_iou_uses_plus_one_pixel_convention():
    # gt 0..10 (11 px wide with +1), pred shifted: continuous IoU < 0.5, +1 IoU >= 0.5.
    gt_box = [0, 0, 10, 10]        # corners 0..10 -> 11x11 = 121
    pred = [4, 0, 10, 10, 1.0]     # corners 4..14: inter 7x11 = 77, union 242 - 77 = 165 -> 0.4667
    assert check_against_reference([[pred]], [[gt_box]], [[1]])["hard"].ap == 0.0
    pred = [3, 0, 10, 10, 1.0]     # inter 8x11 = 88, union 154 -> 0.571 (continuous: 7/13 = 0.538)
    assert check_against_reference([[pred]], [[gt_box]], [[1]])["hard"].ap == pytest.approx(1.0)
    pred = [0, 0, 4, 10, 1.0]      # inter 5x11 = 55 / 121 = 0.4545 (+1); continuous 0.4 -> both miss
    assert check_against_reference([[pred]], [[gt_box]], [[1]])["hard"].ap == 0.0


def test_empty_images_and_images_without_faces():
    preds = [[], [FACE_A + [0.7]], [[5, 5, 10, 10, 0.9]]]   # image 0 empty; image 2 has no faces
    per_image_gt = [[FACE_B], [FACE_A], []]
    result = check_against_reference(preds, per_image_gt, [[1], [1], []])
    final = result["hard"]
    assert final.num_faces == 2
    # The detection on the face-less image is skipped (not a false positive) but its score takes
    # part in the min-max: 0.7 normalises to 0.0, which only the last threshold (thr = 0.0) admits.
    assert final.true_positives[-1] == 1 and final.proposals[-1] == 1
    assert final.true_positives[-2] == 0


def test_scores_outside_unit_interval_are_min_max_normalised():
    preds = [[FACE_A + [-3.0], [200, 200, 20, 20, 7.0]], [FACE_B + [2.0]]]
    per_image_gt = [[FACE_A], [FACE_B]]
    result = check_against_reference(preds, per_image_gt, [[1], [1]])
    assert result.score_range == (-3.0, 7.0)
    # Shifting and scaling every score leaves the evaluation unchanged.
    scaled = [[b[:4] + [b[4] * 0.01 + 0.3] for b in image] for image in preds]
    again = check_against_reference(scaled, per_image_gt, [[1], [1]])
    assert again["hard"].ap == pytest.approx(result["hard"].ap, abs=1e-12)


def test_ties_keep_file_order_and_sorting_matters():
    # Files listed out of score order are sorted first (MATLAB behaviour).
    preds = [[[11, 11, 20, 20, 0.2], FACE_A + [0.9], FACE_B + [0.1]]]
    check_against_reference(preds, [[FACE_A, FACE_B]], [[1, 2]])
    preds = [[[11, 11, 20, 20, 0.5], FACE_A + [0.5], FACE_B + [0.1]]]
    check_against_reference(preds, [[FACE_A, FACE_B]], [[1, 2]])


def test_voc_ap_all_point():
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5])) == pytest.approx(0.75)
    assert voc_ap(np.array([0.0, 0.5]), np.array([np.nan, 0.5])) == pytest.approx(0.25)


def test_random_predictions_match_reference_on_tiny_synthetic_sets():
    rng = np.random.default_rng(0)
    for trial in range(30):
        per_image_gt, per_image_keep, per_image_preds = [], [], []
        for _ in range(rng.integers(1, 5)):
            n = int(rng.integers(0, 6))
            gt = np.c_[rng.integers(0, 200, (n, 2)), rng.integers(2, 40, (n, 2))].astype(float)
            per_image_gt.append(gt.tolist())
            per_image_keep.append(sorted(rng.choice(np.arange(1, n + 1), size=int(rng.integers(0, n + 1)),
                                                    replace=False).tolist()) if n else [])
            preds = []
            for g in gt:
                for _ in range(rng.integers(0, 3)):
                    preds.append((g + rng.normal(0, 3, 4)).tolist() + [float(rng.random())])
            for _ in range(rng.integers(0, 3)):
                preds.append(rng.uniform(0, 200, 4).tolist() + [float(rng.random())])
            per_image_preds.append(preds)
        check_against_reference(per_image_preds, per_image_gt, per_image_keep)


# ---------------------------------------------------------------------------------------------
# The real ground truth
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_gt():
    if not (GT_DIR / "wider_face_val.mat").is_file():
        pytest.skip("official ground truth absent")
    return load_ground_truth(GT_DIR)


def test_real_ground_truth_counts(real_gt):
    assert real_gt.num_images == 3226
    assert real_gt.num_faces == 39708
    assert real_gt.face_counts() == {"easy": 7211, "medium": 13319, "hard": 31958}
    assert len(set(real_gt.events)) == 61
    assert real_gt.events[0] == "0--Parade" and real_gt.names[0] == "0_Parade_marchingband_1_465"
    # the settings are nested: easy faces are medium faces are hard faces
    assert not (real_gt.kept["easy"] & ~real_gt.kept["medium"]).any()
    assert not (real_gt.kept["medium"] & ~real_gt.kept["hard"]).any()


def jittered_predictions(gt: GroundTruth, rng, per_face=2.0, false_positives=2):
    mapping = {}
    for i in range(gt.num_images):
        faces = gt.image_boxes(i)
        n_pred = rng.poisson(per_face * len(faces))
        source = faces[rng.integers(0, len(faces), n_pred)] if len(faces) else np.zeros((0, 4))
        size = np.maximum(source[:, 2:3], source[:, 3:4]) + 1
        boxes = source + rng.normal(0, 0.15, (n_pred, 4)) * size
        fp = np.c_[rng.uniform(0, 800, (false_positives, 2)), rng.uniform(5, 60, (false_positives, 2))]
        boxes = np.concatenate([boxes, fp])
        scores = rng.random(len(boxes)) ** 0.5
        mapping[gt.image_key(i)] = np.round(np.c_[boxes, scores], 1)   # 1 decimal: creates score ties
    return mapping


def test_fast_evaluator_matches_reference_on_real_ground_truth_subset(real_gt):
    rng = np.random.default_rng(1)
    counts = np.diff(real_gt.offsets)
    small = np.nonzero(counts <= 12)[0]
    subset = real_gt.subset(np.sort(rng.choice(small, 40, replace=False)))
    mapping = jittered_predictions(subset, rng)
    result = evaluate(mapping, subset)
    for setting in ("easy", "medium", "hard"):
        keeps = [np.nonzero(subset.kept[setting][subset.offsets[i]:subset.offsets[i + 1]])[0] + 1
                 for i in range(subset.num_images)]
        ap, precision, recall = reference_protocol([mapping[subset.image_key(i)].tolist()
                                                    for i in range(subset.num_images)],
                                                   [subset.image_boxes(i).tolist() for i in range(subset.num_images)],
                                                   [k.tolist() for k in keeps])
        assert result[setting].ap == pytest.approx(ap, abs=1e-9), setting
        np.testing.assert_allclose(result[setting].recall, recall, atol=1e-12)
        np.testing.assert_allclose(result[setting].precision, precision, atol=1e-12, equal_nan=True)
        assert 0.0 < ap < 1.0


def test_whole_validation_set_sanity(real_gt):
    # Exact ground truth with decreasing scores: every counted face found.
    mapping = {real_gt.image_key(i): np.c_[real_gt.image_boxes(i), np.linspace(1, 0.5, len(real_gt.image_boxes(i)))]
               for i in range(real_gt.num_images)}
    result = evaluate(mapping, real_gt)
    for setting in ("easy", "medium", "hard"):
        assert result[setting].recall[-1] > 0.999
        assert result[setting].ap > 0.99
    bins = recall_by_face_size(result, real_gt, "hard")
    assert bins["faces"].sum() == 31958
    assert bins["found"].sum() == result["hard"].true_positives[-1]


def test_ground_truth_missing_file_is_named(tmp_path):
    with pytest.raises(GroundTruthError, match="wider_face_val.mat"):
        load_ground_truth(tmp_path)
    if (GT_DIR / "wider_face_val.mat").is_file():
        (tmp_path / "wider_face_val.mat").symlink_to(GT_DIR / "wider_face_val.mat")
        with pytest.raises(GroundTruthError, match="wider_easy_val.mat"):
            load_ground_truth(tmp_path)


# ---------------------------------------------------------------------------------------------
# Prediction files
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_gt():
    return make_ground_truth([[FACE_A, FACE_B], [FACE_A]], {"easy": [[1], [1]], "medium": [[1, 2], [1]],
                                                            "hard": [[1, 2], [1]]}, events=["1--A", "2--B"])


def test_read_predictions_sorts_and_reports_missing_files(tmp_path, tiny_gt):
    write_prediction_file(tmp_path, "1--A", "img_0", np.array([FACE_B + [0.3], FACE_A + [0.9]]), integer_boxes=False)
    write_prediction_file(tmp_path, "1--A", "img_9", np.array([FACE_A + [0.9]]))   # not in the ground truth
    with pytest.warns(MissingPredictionsWarning, match="1 of 2"):
        preds = read_predictions(tmp_path, tiny_gt)
    assert preds.missing == ["2--B/img_1"]
    assert preds.per_image[0][:, 4].tolist() == [0.9, 0.3]
    assert preds.per_image[1].shape == (0, 5)
    with pytest.raises(PredictionFileError, match="img_1.txt"):
        read_predictions(tmp_path, tiny_gt, strict=True)
    result = evaluate(preds, tiny_gt)
    assert result.missing_files == ("2--B/img_1",)
    assert result.extra_files == ("1--A/img_9.txt",) and "not evaluated" in result.summary()
    assert result["medium"].num_faces == 3 and result["medium"].true_positives[-1] == 2


def test_malformed_line_names_file_and_line(tmp_path, tiny_gt):
    (tmp_path / "1--A").mkdir()
    (tmp_path / "1--A" / "img_0.txt").write_text("img_0\n2\n1 2 3 4 0.5\n1 2 x 4 0.5\n")
    with pytest.raises(PredictionFileError, match=r"img_0.txt, line 4"):
        read_predictions(tmp_path, tiny_gt)
    (tmp_path / "1--A" / "img_0.txt").write_text("img_0\n2\n1 2 3 4 0.5\n")
    with pytest.raises(PredictionFileError, match=r"line 2: announces 2"):
        read_predictions(tmp_path, tiny_gt)
    (tmp_path / "1--A" / "img_0.txt").write_text("img_0\n1\n1 2 3 0.5\n")
    with pytest.raises(PredictionFileError, match=r"line 3: expected 5 numbers"):
        read_predictions(tmp_path, tiny_gt)


def test_empty_file_counts_as_no_detections(tmp_path, tiny_gt):
    write_prediction_file(tmp_path, "2--B", "img_1", np.zeros((0, 5)))
    (tmp_path / "1--A").mkdir()
    (tmp_path / "1--A" / "img_0.txt").write_text("")
    preds = read_predictions(tmp_path, tiny_gt, strict=True)
    assert preds.empty_files == ["1--A/img_0"] and preds.num_boxes == 0
    result = evaluate(preds, tiny_gt)
    assert result["hard"].ap == 0.0


def test_integer_boxes_truncate_like_the_reference_writer():
    text = format_prediction_file("x", np.array([[10.7, 20.2, 30.6, 5.5, 0.875]]))
    assert text == "x\n1\n10 20 31 5 0.875\n"   # x2 = trunc(41.3) = 41 -> w = 31; y2 = trunc(25.7) -> h = 5


def test_evaluate_command_writes_json(tmp_path, real_gt):
    rng = np.random.default_rng(2)
    subset_ids = range(0, 3226, 3)
    mapping = jittered_predictions(real_gt.subset(list(subset_ids)), rng)
    for (event, name), boxes in mapping.items():
        write_prediction_file(tmp_path / "pred", event, name, boxes, integer_boxes=False)
    from ffcore.cli import main

    out = tmp_path / "ap.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(GT_DIR), "--json", str(out)]) == 0
        assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(GT_DIR), "--strict"]) == 2
    aps = json.loads(out.read_text())
    assert set(aps) == {"easy", "medium", "hard"} and all(0 < v < 1 for v in aps.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = evaluate(read_predictions(tmp_path / "pred", real_gt), real_gt)
    assert aps == pytest.approx(direct.to_dict(), abs=1e-12)
    assert len(direct.missing_files) == 3226 - len(subset_ids)


def test_candidate_pruning_equals_full_iou_matrix_on_crowded_images(real_gt):
    # The matcher only looks at faces whose x-range can overlap a box; compare with the
    # plain argmax over the full IoU matrix on the most crowded images (and a large-face one).
    from ffcore.eval.protocol import IOU_THRESHOLD, best_face_per_prediction, iou_plus_one

    counts = np.diff(real_gt.offsets)
    widest = [int(np.argmax([real_gt.image_boxes(i)[:, 2].max() if counts[i] else 0 for i in range(200)]))]
    subset = real_gt.subset(sorted(set(np.argsort(counts)[-3:].tolist() + widest)))
    rng = np.random.default_rng(3)
    mapping = jittered_predictions(subset, rng, per_face=3.0, false_positives=50)
    matched = []
    for i in range(subset.num_images):
        preds = mapping[subset.image_key(i)]
        faces = subset.image_boxes(i)
        full = iou_plus_one(preds[:, None, :4], faces[None, :, :])
        expected = np.where(full.max(axis=1) >= IOU_THRESHOLD, full.argmax(axis=1) + subset.offsets[i], -1)
        got = best_face_per_prediction(preds[:, :4], np.full(len(preds), i), subset)
        np.testing.assert_array_equal(got, expected)
        matched.append(got >= 0)
    assert np.concatenate(matched).mean() > 0.3    # the comparison covers many real matches


def test_figures_from_results(tiny_gt):
    from ffcore.eval.plots import draw_pr_curves, recall_by_size_figure

    preds = {("1--A", "img_0"): np.array([FACE_A + [0.9], FACE_B + [0.4]]), ("2--B", "img_1"): np.array([[0, 0, 5, 5, 0.8]])}
    good = evaluate(preds, tiny_gt, label="good")
    worse = evaluate({("1--A", "img_0"): np.array([FACE_A + [0.9]])}, tiny_gt, label="worse")
    import matplotlib.pyplot as plt

    figure = draw_pr_curves([worse, good])
    axes = figure.get_axes()
    assert [ax.get_title() for ax in axes] == ["Easy set", "Medium set", "Hard set"]
    legend = [t.get_text() for t in axes[2].get_legend().get_texts()]
    assert legend == [f"{100 * good['hard'].ap:.1f}", f"{100 * worse['hard'].ap:.1f}"]   # AP in %, best first
    # the runs are named once, below the panels, in the order given
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["worse", "good"]
    # made by the project's one figure factory: a pyplot figure (shown by a notebook) in the thesis style
    from ffcore.report.plotting import TEXT_WIDTH
    assert plt.fignum_exists(figure.number) and figure.get_size_inches()[0] == pytest.approx(TEXT_WIDTH)
    assert plt.rcParams["font.size"] == 9
    plt.close(figure)
    figure = recall_by_size_figure([good, worse], tiny_gt, setting="hard", bins=(0, 25, np.inf))
    bars = [patch.get_height() for patch in figure.get_axes()[0].patches]
    # bin 0-25 holds FACE_A of both images (20 px), bin >25 FACE_B (30 px). "good" finds A in
    # image 0 and B; "worse" finds only A in image 0. Bars come result by result.
    assert bars == [0.5, 1.0, 0.5, 0.0]
    plt.close(figure)
