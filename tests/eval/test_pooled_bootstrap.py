"""The two-level bootstrap over training seeds and evaluation images: equal to a loop-by-loop
transcription drawing the same random numbers, the one-seed case equal to the image bootstrap,
intervals that widen with the spread between seeds, and verdicts that need several seeds."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ffcore.eval import evaluate, voc_ap
from ffcore.eval.bootstrap import (ONE_SEED, PooledDifference, paired_difference, pooled_ap, pooled_difference,
                                   two_level_draws, verdict)
from ffcore.eval.protocol import _count_at_or_above, score_thresholds
from support import random_study

from ffcore.data.ground_truth import SETTINGS


def seeded_runs(gt, rng, qualities) -> dict[int, object]:
    """One EvalResult per 'training seed': the same faces, detectors of the given qualities."""
    runs = {}
    for seed, quality in enumerate(qualities):
        mapping = {}
        for i in range(gt.num_images):
            faces = gt.image_boxes(i)
            found = faces[rng.random(len(faces)) < 0.3 + 0.6 * quality * np.clip(faces[:, 2] / 40, 0, 1)]
            jitter = found + rng.normal(0, 0.08, found.shape) * found[:, 2:3]
            scores = np.clip(rng.normal(0.5 + 0.35 * quality, 0.15, len(found)), 0.01, 1)
            fp = np.c_[rng.uniform(0, 400, (3, 2)), rng.uniform(6, 60, (3, 2))]
            mapping[gt.image_key(i)] = np.c_[np.concatenate([jitter, fp]),
                                             np.concatenate([scores, np.clip(rng.normal(0.4, 0.15, 3), 0.01, 1)])]
        runs[seed] = evaluate(mapping, gt)
    return runs


@pytest.fixture(scope="module")
def arms():
    rng = np.random.default_rng(21)
    gt, _ = random_study(rng, 30)
    return gt, seeded_runs(gt, rng, [0.9, 0.7, 0.8]), seeded_runs(gt, rng, [0.5, 0.6, 0.4])


def naive_ap(result, drawn_images: np.ndarray, setting: str) -> float:
    """The protocol's AP on a resampled image list, from the per-prediction decisions (as the
    image bootstrap's own naive test does)."""
    matches = result.matches
    thresholds = score_thresholds()
    picks = np.concatenate([np.nonzero(matches.image == i)[0] for i in drawn_images])
    scores = matches.score[picks]
    proposals = _count_at_or_above(scores[matches.counted[setting][picks]], thresholds)
    true_positives = _count_at_or_above(scores[matches.true_positive[setting][picks]], thresholds)
    faces = int(matches.faces_per_image[setting][drawn_images].sum())
    if faces == 0:
        return float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        return voc_ap(true_positives / faces, true_positives / proposals)


def naive_pooled_samples(arm: dict, reference: dict, resamples: int, seed: int, setting: str) -> np.ndarray:
    """Loop by loop: the same generator calls as the vectorised code, then for every resample the
    images it drew, the seeds each arm drew, and the mean AP of each arm's drawn seeds."""
    arm_seeds, ref_seeds = sorted(arm), sorted(reference)
    num_images = arm[arm_seeds[0]].num_images
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(num_images, np.full(num_images, 1.0 / num_images), size=resamples)
    arm_draws = rng.integers(0, len(arm_seeds), size=(resamples, len(arm_seeds)))
    paired = arm_seeds == ref_seeds
    ref_draws = arm_draws if paired else rng.integers(0, len(ref_seeds), size=(resamples, len(ref_seeds)))
    out = []
    for r in range(resamples):
        drawn_images = np.repeat(np.arange(num_images), weights[r])
        ours = [naive_ap(arm[arm_seeds[k]], drawn_images, setting) for k in arm_draws[r]]
        theirs = [naive_ap(reference[ref_seeds[k]], drawn_images, setting) for k in ref_draws[r]]
        out.append(sum(ours) / len(ours) - sum(theirs) / len(theirs))
    return np.array(out)


@pytest.mark.parametrize("paired", [True, False])
def test_vectorised_two_level_bootstrap_equals_a_loop_over_resamples_and_seeds(arms, paired):
    _, arm, reference = arms
    if not paired:   # different seeds in the reference arm: drawn independently
        reference = {seed + 10: result for seed, result in reference.items() if seed < 2}
    resamples, seed = 30, 4
    fast = pooled_difference(arm, reference, resamples=resamples, seed=seed)
    for setting in SETTINGS:
        naive = naive_pooled_samples(arm, reference, resamples, seed, setting)
        low, high = np.percentile(naive[np.isfinite(naive)], [2.5, 97.5])
        assert fast[setting].low == pytest.approx(low, abs=1e-12)
        assert fast[setting].high == pytest.approx(high, abs=1e-12)
        expected = np.mean([r.ap[setting] for r in arm.values()]) - np.mean([r.ap[setting] for r in reference.values()])
        assert fast[setting].estimate == pytest.approx(expected, abs=1e-12)
        assert fast[setting].paired_seeds is paired
        assert fast[setting].seeds == (len(arm), len(reference))


def test_paired_seeds_share_one_draw_and_unpaired_arms_do_not():
    weights, a, b = two_level_draws(10, 3, 3, True, resamples=5, seed=1)
    assert b is a and weights.shape == (5, 10) and (weights.sum(axis=1) == 10).all()
    _, a2, b2 = two_level_draws(10, 3, 2, False, resamples=5, seed=1)
    assert (a2 == a).all() and b2.shape == (5, 2) and b2.max() < 2
    with pytest.raises(ValueError, match="as many seeds"):
        two_level_draws(10, 3, 2, True)


def test_one_seed_per_arm_is_the_image_bootstrap_and_gets_no_verdict(arms):
    _, arm, reference = arms
    pooled = pooled_difference({0: arm[0]}, {0: reference[0]}, resamples=200, seed=3)
    image_only = paired_difference(arm[0], reference[0], resamples=200, seed=3)
    for setting in SETTINGS:
        assert (pooled[setting].low, pooled[setting].high) == (image_only[setting].low, image_only[setting].high)
        assert verdict(pooled[setting]) == ONE_SEED
    # several seeds against one: still one seed on one side, still not established
    assert verdict(pooled_difference(arm, {0: reference[0]}, resamples=100)["hard"]) == ONE_SEED


def test_a_clear_pooled_difference_gets_its_direction(arms):
    _, arm, reference = arms
    difference = pooled_difference(arm, reference, resamples=300)
    for setting in SETTINGS:
        assert difference[setting].low <= difference[setting].estimate <= difference[setting].high
    # qualities 0.7-0.9 against 0.4-0.6: hard AP clearly higher
    assert verdict(difference["hard"]) == "higher"
    assert verdict(pooled_difference(reference, arm, resamples=300)["hard"]) == "lower"
    assert isinstance(difference["hard"].scaled(100), PooledDifference)
    assert difference["hard"].scaled(100).seeds == (3, 3)


def test_arm_against_itself_with_paired_seeds_is_exactly_zero(arms):
    _, arm, _ = arms
    difference = pooled_difference(arm, arm, resamples=100)
    for setting in SETTINGS:
        assert (difference[setting].estimate, difference[setting].low, difference[setting].high) == (0.0, 0.0, 0.0)
        assert verdict(difference[setting]) == "inside the noise"


def test_interval_widens_with_the_spread_between_seeds():
    rng = np.random.default_rng(8)
    gt, _ = random_study(rng, 60)
    reference = seeded_runs(gt, rng, [0.6, 0.6, 0.6, 0.6])
    tight = seeded_runs(gt, rng, [0.62, 0.6, 0.61, 0.59])
    spread = seeded_runs(gt, rng, [0.95, 0.25, 0.9, 0.3])
    narrow = pooled_difference(tight, reference, resamples=400)["hard"]
    wide = pooled_difference(spread, reference, resamples=400)["hard"]
    assert (wide.high - wide.low) > 1.5 * (narrow.high - narrow.low)
    # the seed level adds width over the image level of any single pair
    single = paired_difference(spread[0], reference[0], resamples=400)["hard"]
    assert (wide.high - wide.low) > (single.high - single.low)


def test_pooled_ap_brackets_the_mean_over_seeds(arms):
    _, arm, _ = arms
    intervals = pooled_ap(arm, resamples=300)
    for setting in SETTINGS:
        mean = np.mean([r.ap[setting] for r in arm.values()])
        assert intervals[setting].estimate == pytest.approx(mean)
        assert intervals[setting].low <= mean <= intervals[setting].high


def test_runs_on_different_images_are_refused(arms):
    _, arm, _ = arms
    rng = np.random.default_rng(2)
    other_gt, _ = random_study(rng, 12)
    other = seeded_runs(other_gt, rng, [0.5])
    with pytest.raises(ValueError, match="same evaluation images"):
        pooled_difference(arm, other)
    with pytest.raises(ValueError, match="at least one training seed"):
        pooled_difference({}, arm)


def test_study_sized_comparison_runs_in_seconds():
    """1000 resamples x 5 seeds per arm x 100 images x 3 settings (the synthetic profile's size)."""
    rng = np.random.default_rng(13)
    gt, _ = random_study(rng, 100)
    arm = seeded_runs(gt, rng, [0.6, 0.65, 0.7, 0.55, 0.6])
    reference = seeded_runs(gt, rng, [0.5, 0.55, 0.45, 0.5, 0.6])
    start = time.perf_counter()
    pooled_difference(arm, reference, resamples=1000)   # the evaluations above are not timed
    assert time.perf_counter() - start < 20   # a few seconds on a busy 2-core machine; 20 s is a bug
