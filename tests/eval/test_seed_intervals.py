"""The two-stage interval over seeds and images covers a known difference: simulated AP tables
(`ffcore.eval.interval_coverage`) with a seed effect, an image effect shared by an arm's seeds and
each run's own image noise, at 3 and at 5 seeds, whichever part dominates.
`benchmarks/bench_interval_coverage.py` prints the same coverage beside that of the two-level
percentile bootstrap it replaced, which falls short where the seeds dominate."""

from __future__ import annotations

import numpy as np
import pytest

from ffcore.eval.interval_coverage import SCENARIOS, SeedImageScenario, coverage, two_stage_method
from ffcore.eval.seed_intervals import SeedComponent, seed_difference, two_stage_estimate


@pytest.mark.parametrize("seeds", [3, 5])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_two_stage_interval_covers_the_true_difference(scenario, seeds):
    covered = coverage(two_stage_method, scenario, seeds, trials=800, resamples=200, seed=seeds)
    assert covered >= 0.93, f"{scenario.name}, {seeds} seeds: covers {covered:.1%}"


def test_arms_with_different_seeds_cover_too():
    scenario = SeedImageScenario("seeds dominate, 3 vs 5 seeds", seed_sd=2.5, arm_image_sd=4.0, run_image_sd=5.0)

    def unpaired(arm_values, arm_samples, reference_values, reference_samples, images, paired, level):
        # the reference arm has two more seeds, so the arms are compared as two components (Welch)
        extra = reference_values.size - 2
        return seed_difference(arm_values[:extra], arm_samples[:extra], reference_values, reference_samples,
                               images, False).bounds(level)

    assert coverage(unpaired, scenario, seeds=5, trials=800, resamples=200, paired=False, seed=7) >= 0.93


def test_the_seed_part_alone_is_a_t_interval_over_the_seed_means():
    values = np.array([1.0, 2.0, 4.0])
    estimate = two_stage_estimate([SeedComponent(values, np.zeros((3, 50)))], num_images=100)
    low, high = estimate.bounds(0.95)
    half = 4.302652729749464 * values.std(ddof=1) / np.sqrt(3)    # t(0.975, 2 df)
    assert (low, high) == pytest.approx((values.mean() - half, values.mean() + half))
    assert estimate.image_variance == 0.0 and estimate.degrees_of_freedom == pytest.approx(2)


def test_an_image_effect_shared_by_every_seed_is_carried_by_the_image_part():
    rng = np.random.default_rng(3)
    shared = rng.normal(0, 1, (1, 400))
    samples = np.repeat(shared, 4, axis=0) + rng.normal(0, 0.1, (4, 400))
    estimate = two_stage_estimate([SeedComponent(np.zeros(4), samples)], num_images=100)
    # the off-diagonal covariances are the shared part: about its variance, 1; the seeds agree exactly
    assert estimate.seed_variance == 0.0
    assert estimate.image_variance == pytest.approx(np.var(shared, ddof=1), rel=0.05)


def test_components_must_share_the_image_resamples():
    with pytest.raises(ValueError, match="same image draws"):
        two_stage_estimate([SeedComponent(np.zeros(2), np.zeros((2, 10))),
                            SeedComponent(np.zeros(2), np.zeros((2, 12)))], num_images=50)
    with pytest.raises(ValueError, match=r"\[seeds=3, resamples\]"):
        SeedComponent(np.zeros(3), np.zeros((2, 10)))
