"""Coverage of a seed-level interval method, by simulation against a known difference.

An interval is trusted only once it has been seen to cover: each trial draws two arms' AP
tables (per-image contributions, so an arm's AP is the mean over the evaluation images and an
image resample reweights them exactly as the bootstrap does) with a known true difference, a
seed effect per run and image effects, and asks the method for its interval. The coverage is
the fraction of trials whose interval contains the true difference.

Per image i, seed s of arm k:

    y[k, s, i] = mu[k] + difficulty[i] + arm_image[k, i] + seed[k, s] + run_image[k, s, i]

`difficulty` is shared by both arms (it cancels in a paired difference); `arm_image` is the
image part of the difference, the same for every seed of an arm (every run of a study sees
the same images); `seed` moves a whole run; `run_image` is proper to one run. The true
difference is mu[0] - mu[1], the expectation over seeds and over the population of images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ffcore.eval.seed_intervals import seed_difference

# (arm values [n], arm samples [n, R], reference values, reference samples, images, paired, level) -> (low, high)
IntervalMethod = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, bool, float], tuple[float, float]]


@dataclass(frozen=True)
class SeedImageScenario:
    """Standard deviations (AP points) of each effect, and the true difference of the arms."""

    name: str
    seed_sd: float            # of a run's AP over training seeds
    arm_image_sd: float       # per image, of an arm's own image effect (the image part of a difference)
    run_image_sd: float       # per image, of one run's own image noise
    difficulty_sd: float = 20.0
    true_difference: float = 2.0
    images: int = 100


SCENARIOS = (
    SeedImageScenario("seeds dominate", seed_sd=2.5, arm_image_sd=4.0, run_image_sd=5.0),
    SeedImageScenario("balanced", seed_sd=1.2, arm_image_sd=8.0, run_image_sd=6.0),
    SeedImageScenario("images dominate", seed_sd=0.3, arm_image_sd=12.0, run_image_sd=6.0),
)


def simulated_tables(scenario: SeedImageScenario, seeds: int, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """[seeds, images] per-image contributions of the arm and of the reference (their row means are the APs)."""
    shape = (seeds, scenario.images)
    difficulty = rng.normal(0.0, scenario.difficulty_sd, scenario.images)

    def arm(mean: float) -> np.ndarray:
        own_images = rng.normal(0.0, scenario.arm_image_sd, scenario.images)
        seed_effect = rng.normal(0.0, scenario.seed_sd, (seeds, 1))
        return mean + difficulty + own_images + seed_effect + rng.normal(0.0, scenario.run_image_sd, shape)

    return arm(50.0 + scenario.true_difference), arm(50.0)


def two_stage_method(arm_values, arm_samples, reference_values, reference_samples, images, paired, level):
    """The study's method (`ffcore.eval.bootstrap.pooled_difference` with several seeds)."""
    return seed_difference(arm_values, arm_samples, reference_values, reference_samples, images, paired).bounds(level)


def coverage(method: IntervalMethod, scenario: SeedImageScenario, seeds: int, trials: int = 500,
             resamples: int = 300, paired: bool = True, level: float = 0.95, seed: int = 0) -> float:
    """Fraction of `trials` simulated studies whose interval from `method` contains the true difference."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(trials):
        arm, reference = simulated_tables(scenario, seeds, rng)
        weights = rng.multinomial(scenario.images, np.full(scenario.images, 1.0 / scenario.images), size=resamples)
        resampled = (weights / scenario.images).T          # [images, R]: a resample's AP is a weighted mean
        low, high = method(arm.mean(axis=1), arm @ resampled, reference.mean(axis=1), reference @ resampled,
                           scenario.images, paired, level)
        hits += low <= scenario.true_difference <= high
    return hits / trials
