"""Bootstrap intervals of AP over validation images: exact on the full sample, equal to a
naive per-resample loop and to evaluating a resampled dataset from scratch, sane coverage."""

from __future__ import annotations

import numpy as np
import pytest

from ffcore.eval import SETTINGS, GroundTruth, evaluate, voc_ap
from ffcore.eval.bootstrap import (ap_intervals, bootstrap_ap, paired_difference, percentile_interval,
                                   resample_weights, verdict)
from ffcore.eval.protocol import _count_at_or_above, score_thresholds
from support import random_study


@pytest.fixture(scope="module")
def study():
    rng = np.random.default_rng(3)
    gt, mapping = random_study(rng, 40)
    return gt, mapping, evaluate(mapping, gt)


def test_every_image_drawn_once_gives_the_evaluators_ap(study):
    _, _, result = study
    aps = bootstrap_ap(result, np.ones((1, result.num_images), dtype=np.int64))
    for setting in SETTINGS:
        assert 0.1 < result.ap[setting] < 0.99
        assert aps[setting][0] == pytest.approx(result.ap[setting], abs=1e-12)


def test_vectorised_resamples_equal_a_naive_loop_over_resamples(study):
    _, _, result = study
    matches = result.matches
    weights = resample_weights(result.num_images, resamples=25, seed=7)
    fast = bootstrap_ap(result, weights)
    thresholds = score_thresholds()
    for r, row in enumerate(weights):
        drawn = np.repeat(np.arange(result.num_images), row)       # image indices, with repeats
        for setting in SETTINGS:
            picks = np.concatenate([np.nonzero(matches.image == i)[0] for i in drawn])
            scores = matches.score[picks]
            proposals = _count_at_or_above(scores[matches.counted[setting][picks]], thresholds)
            true_positives = _count_at_or_above(scores[matches.true_positive[setting][picks]], thresholds)
            faces = int(matches.faces_per_image[setting][drawn].sum())
            with np.errstate(divide="ignore", invalid="ignore"):
                expected = voc_ap(true_positives / faces, true_positives / proposals)
            assert fast[setting][r] == pytest.approx(expected, abs=1e-12), (r, setting)


def test_a_reweighting_equals_evaluating_the_resampled_dataset_from_scratch(study):
    """Every image kept at least once, so the dataset-wide score range (step 2) is unchanged and
    the full protocol on a dataset with the repeated images must give the bootstrap's AP."""
    gt, mapping, result = study
    rng = np.random.default_rng(11)
    counts = 1 + rng.integers(0, 3, result.num_images)
    order = np.repeat(np.arange(gt.num_images), counts)
    boxes = np.concatenate([gt.image_boxes(i) for i in order])
    offsets = np.concatenate([[0], np.cumsum([len(gt.image_boxes(i)) for i in order])]).astype(np.int64)
    kept = {s: np.concatenate([gt.kept[s][gt.offsets[i]:gt.offsets[i + 1]] for i in order]) for s in SETTINGS}
    repeated = GroundTruth(events=("0--Event",) * len(order), names=tuple(f"copy_{k}" for k in range(len(order))),
                           boxes=boxes, offsets=offsets, kept=kept)
    repeated_predictions = {repeated.image_key(k): mapping[gt.image_key(i)] for k, i in enumerate(order)}
    direct = evaluate(repeated_predictions, repeated)
    reweighted = bootstrap_ap(result, counts[None, :])
    for setting in SETTINGS:
        assert reweighted[setting][0] == pytest.approx(direct.ap[setting], abs=1e-12)


def test_interval_brackets_the_estimate_and_shrinks_with_more_images():
    rng = np.random.default_rng(5)
    gt_small, map_small = random_study(rng, 30)
    gt_large, map_large = random_study(rng, 480)
    small = ap_intervals(evaluate(map_small, gt_small), resamples=400)
    large = ap_intervals(evaluate(map_large, gt_large), resamples=400)
    for setting in SETTINGS:
        assert small[setting].low <= small[setting].estimate <= small[setting].high
        # 16x the images: the width falls by about 4x (allow 2x for the noise of 30 images)
        assert (large[setting].high - large[setting].low) < (small[setting].high - small[setting].low) / 2


def test_coverage_of_the_true_ap_is_close_to_the_nominal_level():
    """Validation sets drawn from one population: the 95 % interval of each should contain the
    population AP (measured on a very large draw) in most of them."""
    population_gt, population_map = random_study(np.random.default_rng(100), 4000)
    truth = evaluate(population_map, population_gt).ap["medium"]
    covered = 0
    trials = 40
    for trial in range(trials):
        gt, mapping = random_study(np.random.default_rng(1000 + trial), 60)
        interval = ap_intervals(evaluate(mapping, gt), resamples=300, seed=trial)["medium"]
        covered += interval.low <= truth <= interval.high
    assert covered / trials >= 0.8


def test_paired_difference_of_a_model_with_itself_is_exactly_zero(study):
    _, _, result = study
    difference = paired_difference(result, result, resamples=200)
    for setting in SETTINGS:
        assert (difference[setting].estimate, difference[setting].low, difference[setting].high) == (0.0, 0.0, 0.0)
        # two single runs: the interval is image-level only, so no verdict is established
        assert verdict(difference[setting]) == "one seed: not established"


def test_paired_interval_is_narrower_than_the_marginal_ones_for_correlated_models(study):
    gt, mapping, result = study
    rng = np.random.default_rng(9)
    # a second model: the same detections, slightly perturbed scores, and a few extra false positives
    other = {key: np.r_[boxes * [1, 1, 1, 1, 0] + np.c_[np.zeros((len(boxes), 4)),
                                                          np.clip(boxes[:, 4] + rng.normal(0, 0.05, len(boxes)), 0, 1)],
                        [[5, 5, 30, 30, 0.3]]]
             for key, boxes in mapping.items()}
    result_b = evaluate(other, gt)
    paired = paired_difference(result_b, result, resamples=400)["hard"]
    a, b = ap_intervals(result, resamples=400)["hard"], ap_intervals(result_b, resamples=400)["hard"]
    assert paired.estimate == pytest.approx(result_b.ap["hard"] - result.ap["hard"])
    assert paired.high - paired.low < min(a.high - a.low, b.high - b.low)


def test_verdicts_and_missing_intervals():
    assert verdict(percentile_interval(0.02, np.array([0.01, 0.02, 0.03]))) == "higher"
    assert verdict(percentile_interval(-0.02, np.array([-0.03, -0.02, -0.01]))) == "lower"
    assert verdict(percentile_interval(0.0, np.array([np.nan]))) == "no interval"


def test_wrong_weight_shape_names_the_expected_columns(study):
    _, _, result = study
    with pytest.raises(ValueError, match=f"one column per validation image"):
        bootstrap_ap(result, np.ones((3, result.num_images + 1)))
