"""Intervals over training seeds that carry the evaluation images' variance too (two-stage, t-based).

A trained arm's AP moves for two reasons: the training seed (initialisation, data order) and
the evaluation images (another draw of test images gives another AP). Every run of a study is
evaluated on the SAME images, so the image part does not average out over seeds: it is shared
by every seed of an arm. Model of one seed-level value (a run's AP, or a seed pair's paired
difference):

    x[k, s] = mu[k] + a[k, s] + I[k] + e[k, s]

with `a` the seed effect, `I` the image effect shared by every seed of component k (an arm, or
the paired differences), `e` the part of the image effect proper to one run. Then

    Var(mean_s x[k, s]) = (Var a + Var e) / n_k  +  Var I[k].

Stage 1 (images): one set of image resamples is applied to every run (paired on images); the
covariance matrix C of the runs' resampled values estimates Cov(I + e). Its off-diagonal
entries are the shared part only (e of two runs are independent), so the mean off-diagonal
covariance of a component estimates Var I[k], the mean covariance between two components
estimates Cov(I[k], I[l]); a one-seed component cannot separate I from e and takes its whole
image variance C[kk] (its seed variance is unknown: `verdict` says so).

Stage 2 (seeds): the sample variance of the n_k seed-level values estimates Var a + Var e
(the run-proper image part is already in it, so it is not added twice): the seed part is
A = sum_k s_k^2 / n_k, with n - 1 degrees of freedom (Welch-Satterthwaite's over the arms when
they have different seeds); the shared image part is B = sum_kl sign_k sign_l Cov(I[k], I[l]),
with (images - 1). The interval is

    estimate +- sqrt( (t(df_seeds) sqrt(A))^2 + (t(images - 1) sqrt(B))^2 ):

each part's half-width at its own quantile, added in quadrature. With the seed part dominant it
is the t interval with n - 1 df on the seed means (a percentile bootstrap of 3-5 seeds cannot
reach past the extreme seeds and covers far less than it states); where the image part
dominates it tends to the image interval, widened by the seeds' spread. One pooled df
(Satterthwaite over A and B) was tried and rejected: it grows exactly when A is small by
chance, which is when the interval is already too narrow, and covers about 91 % at 3 seeds
when the seeds dominate. `ffcore.eval.interval_coverage` checks the coverage by simulation
against a known difference (`benchmarks/bench_interval_coverage.py` prints it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class SeedComponent:
    """One signed term of an estimate: the seed-level values of an arm (or of paired differences).

    `values` [n]: the value of each seed's run on the evaluation images; `samples` [n, R]: the
    same runs on R image resamples, the same resamples for every component of the estimate."""

    values: np.ndarray
    samples: np.ndarray
    sign: float = 1.0

    def __post_init__(self):
        values, samples = np.asarray(self.values, dtype=np.float64), np.asarray(self.samples, dtype=np.float64)
        if values.ndim != 1 or values.size < 1:
            raise ValueError(f"a seed component needs one value per seed (1-d, at least one), got shape {values.shape}")
        if samples.ndim != 2 or samples.shape[0] != values.size:
            raise ValueError(f"samples must be [seeds={values.size}, resamples], got shape {samples.shape}")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "samples", samples)

    @property
    def seeds(self) -> int:
        return self.values.size


@dataclass(frozen=True)
class TwoStageEstimate:
    """Estimate, its variance split into the seed part and the shared image part, and their df
    (the seed part's is NaN when no component has two seeds)."""

    estimate: float
    seed_variance: float
    image_variance: float
    degrees_of_freedom: float       # of the seed part
    image_degrees_of_freedom: float

    @property
    def standard_error(self) -> float:
        return float(np.sqrt(self.seed_variance + self.image_variance))

    def bounds(self, level: float) -> tuple[float, float]:
        """(low, high) of the central `level` t interval; the estimate twice when the variance is 0."""
        quantile = 0.5 + level / 2
        seed_half = float(stats.t.ppf(quantile, self.degrees_of_freedom)) * np.sqrt(self.seed_variance) \
            if self.seed_variance > 0 else 0.0
        image_half = float(stats.t.ppf(quantile, self.image_degrees_of_freedom)) * np.sqrt(self.image_variance)
        half = float(np.hypot(seed_half, image_half))
        return self.estimate - half, self.estimate + half


def two_stage_estimate(components: Sequence[SeedComponent], num_images: int) -> TwoStageEstimate:
    """sum_k sign_k mean_s x[k, s] with its two-stage variance (see the module docstring).

    Resamples where any run has no value (NaN: a resample without a face of the setting) are left
    out of the image covariance."""
    if not components:
        raise ValueError("an estimate needs at least one seed component")
    if num_images < 2:
        raise ValueError(f"an image variance needs at least two evaluation images, got {num_images}")
    resamples = {c.samples.shape[1] for c in components}
    if len(resamples) != 1:
        raise ValueError(f"every component must be resampled on the same image draws, got {sorted(resamples)} resamples")
    stacked = np.concatenate([c.samples for c in components])
    finite = np.isfinite(stacked).all(axis=0)
    if finite.sum() < 2:
        raise ValueError("fewer than two image resamples have a value for every run: no image variance")
    covariance = np.atleast_2d(np.cov(stacked[:, finite]))
    bounds = np.cumsum([0] + [c.seeds for c in components])
    blocks = [slice(bounds[k], bounds[k + 1]) for k in range(len(components))]

    def shared(k: int, l: int) -> float:
        block = covariance[blocks[k], blocks[l]]
        if k != l:
            return float(block.mean())
        n = components[k].seeds
        if n == 1:
            return float(block[0, 0])
        return float((block.sum() - np.trace(block)) / (n * (n - 1)))

    image = sum(components[k].sign * components[l].sign * shared(k, l)
                for k in range(len(components)) for l in range(len(components)))
    image = max(float(image), 0.0)      # a negative estimate of a variance is sampling noise around 0
    seed_parts = [(float(c.values.var(ddof=1)) / c.seeds, c.seeds - 1) for c in components if c.seeds > 1]
    seed = sum(part for part, _ in seed_parts)
    denominator = sum(part ** 2 / df for part, df in seed_parts)
    seed_df = seed ** 2 / denominator if denominator > 0 else float("nan")
    estimate = float(sum(c.sign * c.values.mean() for c in components))
    return TwoStageEstimate(estimate, seed, image, float(seed_df), float(num_images - 1))


def seed_difference(arm_values: np.ndarray, arm_samples: np.ndarray, reference_values: np.ndarray,
                    reference_samples: np.ndarray, num_images: int, paired_seeds: bool) -> TwoStageEstimate:
    """mean(arm) - mean(reference) over seeds: the per-seed paired differences as one component when
    the seeds are paired (seed s of one arm met seed s of the other), two components (Welch) otherwise."""
    if paired_seeds:
        return two_stage_estimate([SeedComponent(np.asarray(arm_values) - np.asarray(reference_values),
                                                 np.asarray(arm_samples) - np.asarray(reference_samples))],
                                  num_images)
    return two_stage_estimate([SeedComponent(arm_values, arm_samples),
                               SeedComponent(reference_values, reference_samples, sign=-1.0)], num_images)
