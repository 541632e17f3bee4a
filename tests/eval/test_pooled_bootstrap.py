"""The two-stage interval over training seeds and evaluation images on real evaluations: equal to
a transcription from the runs' own image bootstraps, the one-seed case equal to the image
bootstrap, intervals that widen with the spread between seeds, and verdicts that need several
seeds. Its coverage against a known difference is `tests/test_seed_intervals.py`."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ffcore.eval import evaluate, voc_ap
from scipy import stats

from ffcore.eval.bootstrap import (ONE_SEED, PooledDifference, bootstrap_ap, paired_difference, pooled_ap,
                                   pooled_difference, resample_weights, verdict)
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


def transcribed_interval(arm: dict, reference: dict, resamples: int, seed: int, setting: str) -> tuple[float, float]:
    """The paired two-stage interval written out from each run's image bootstrap: seed part s^2/n of the
    per-seed differences with t(n-1), shared image part the mean covariance between two different seeds'
    resampled differences with t(images-1), the two half-widths added in quadrature."""
    seeds = sorted(arm)
    num_images = arm[seeds[0]].num_images
    weights = resample_weights(num_images, resamples, seed)
    differences = [arm[k].ap[setting] - reference[k].ap[setting] for k in seeds]
    resampled = [bootstrap_ap(arm[k], weights)[setting] - bootstrap_ap(reference[k], weights)[setting] for k in seeds]
    n = len(seeds)
    keep = np.all([np.isfinite(r) for r in resampled], axis=0)
    covariances = [np.cov(resampled[i][keep], resampled[j][keep])[0, 1]
                   for i in range(n) for j in range(n) if i != j]
    image = max(float(np.mean(covariances)), 0.0)
    seed_half = stats.t.ppf(0.975, n - 1) * np.sqrt(np.var(differences, ddof=1) / n)
    half = np.hypot(seed_half, stats.t.ppf(0.975, num_images - 1) * np.sqrt(image))
    return np.mean(differences) - half, np.mean(differences) + half


def test_paired_two_stage_interval_equals_its_transcription(arms):
    _, arm, reference = arms
    resamples, seed = 60, 4
    fast = pooled_difference(arm, reference, resamples=resamples, seed=seed)
    for setting in SETTINGS:
        low, high = transcribed_interval(arm, reference, resamples, seed, setting)
        assert fast[setting].low == pytest.approx(low, abs=1e-12)
        assert fast[setting].high == pytest.approx(high, abs=1e-12)
        expected = np.mean([r.ap[setting] for r in arm.values()]) - np.mean([r.ap[setting] for r in reference.values()])
        assert fast[setting].estimate == pytest.approx(expected, abs=1e-12)
        assert fast[setting].paired_seeds is True
        assert fast[setting].seeds == (3, 3) and fast[setting].degrees_of_freedom == pytest.approx(2)


def test_arms_with_different_seeds_are_compared_as_two_components(arms):
    _, arm, reference = arms
    other = {seed + 10: result for seed, result in reference.items() if seed < 2}
    difference = pooled_difference(arm, other, resamples=80, seed=2)
    for setting in SETTINGS:
        assert difference[setting].paired_seeds is False and difference[setting].seeds == (3, 2)
        # Welch-Satterthwaite over the two arms' seed parts: between the smaller arm's df and the sum
        assert 1 - 1e-9 <= difference[setting].degrees_of_freedom <= 3 + 1e-9
        assert difference[setting].low <= difference[setting].estimate <= difference[setting].high


def test_one_seed_per_arm_is_the_image_bootstrap_and_gets_no_verdict(arms):
    _, arm, reference = arms
    pooled = pooled_difference({0: arm[0]}, {0: reference[0]}, resamples=200, seed=3)
    image_only = paired_difference(arm[0], reference[0], resamples=200, seed=3)
    for setting in SETTINGS:
        assert (pooled[setting].low, pooled[setting].high) == (image_only[setting].low, image_only[setting].high)
        assert verdict(pooled[setting]) == ONE_SEED
    # several seeds against one: still one seed on one side, still not established
    assert verdict(pooled_difference(arm, {0: reference[0]}, resamples=100)["hard"]) == ONE_SEED


def test_a_clear_pooled_difference_gets_its_direction():
    rng = np.random.default_rng(5)
    gt, _ = random_study(rng, 40)
    arm, reference = seeded_runs(gt, rng, [0.9, 0.85, 0.88]), seeded_runs(gt, rng, [0.3, 0.35, 0.3])
    difference = pooled_difference(arm, reference, resamples=300)
    for setting in SETTINGS:
        assert difference[setting].low <= difference[setting].estimate <= difference[setting].high
    # qualities 0.85-0.9 against 0.3-0.35, seed by seed: hard AP clearly higher
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
