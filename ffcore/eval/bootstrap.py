"""Bootstrap confidence intervals of WIDER FACE AP over validation images.

A resample draws the validation images with replacement; each drawn image brings its
predictions, its protocol decisions and its faces. The protocol's proposals[t] and
true_positives[t] are sums over images of per-image counts of predictions with score
>= thr[t], so the AP of a resample only needs those per-image counts weighted by how many
times the image was drawn: one matrix product gives every resample at once.

The predictions' decisions (which face a box matches, which boxes are on ignored faces)
and their normalised scores are those of the full validation set (`PredictionMatches`):
a resample reweights images, it does not re-run the matching nor the dataset-wide
min-max of step 2. The matching is per image, so only the normalisation is held fixed.

Paired comparisons draw ONE set of resamples and apply it to both models: the
difference of their APs on the same resampled images is what varies, so the interval of
the difference is narrower than the two marginal intervals suggest.

Training seeds are the other source of noise, and for these models the larger one: two
trainings of one recipe differ by more than an image-level interval is wide. A comparison
of two *arms* (a recipe trained over several seeds against another) is therefore estimated in
two stages (`pooled_difference`, `ffcore.eval.seed_intervals`): the image resamples above, the
same for every run, give each run's image variance and the part of it that all runs share;
the spread of the seed-level values gives the seed part; the interval is a t interval over
the seeds (n - 1 degrees of freedom) widened by the shared image part. Seeds
are paired when both arms were trained with the same seeds: the seed-level values are then
the per-seed paired differences (same initialisation and data order, only the studied factor
differs). A comparison where an arm has one seed cannot say how far a retraining moves that
arm: its verdict is `ONE_SEED`, whatever the interval; two single runs keep the percentile
image bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as _replace
from typing import Mapping

import numpy as np

from ffcore.eval.protocol import EvalResult, PredictionMatches, score_thresholds
from ffcore.eval.seed_intervals import SeedComponent, seed_difference, two_stage_estimate

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95


def resample_weights(num_images: int, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """[resamples, num_images] int: how many times each image is drawn in each resample."""
    if num_images < 1:
        raise ValueError("a bootstrap needs at least one validation image")
    rng = np.random.default_rng(seed)
    return rng.multinomial(num_images, np.full(num_images, 1.0 / num_images), size=resamples)


def _threshold_index(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """First threshold index t with score >= thr[t] (thr descending); len(thr) when below all."""
    ascending = thresholds[::-1]
    passed = np.searchsorted(ascending, scores, side="right")   # thresholds <= score
    return thresholds.size - passed


def _per_image_curves(matches: PredictionMatches, mask: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """[N, T] counts of masked predictions of each image with score >= thr[t]."""
    count = thresholds.size
    first = _threshold_index(matches.score[mask], thresholds)
    flat = np.bincount(matches.image[mask] * (count + 1) + first, minlength=matches.num_images * (count + 1))
    return np.cumsum(flat.reshape(matches.num_images, count + 1)[:, :count], axis=1)


def _voc_ap_rows(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """`protocol.voc_ap` of every row. Recall never decreases along a row, so summing
    (recall step x running-max precision) over the steps that change it is the same sum."""
    rows = recall.shape[0]
    mrec = np.concatenate([np.zeros((rows, 1)), recall, np.ones((rows, 1))], axis=1)
    mpre = np.concatenate([np.zeros((rows, 1)), precision, np.zeros((rows, 1))], axis=1)
    mpre = np.fmax.accumulate(mpre[:, ::-1], axis=1)[:, ::-1]
    step = mrec[:, 1:] - mrec[:, :-1]
    return np.where(step != 0, step * mpre[:, 1:], 0.0).sum(axis=1)


def bootstrap_ap(result: EvalResult, weights: np.ndarray, settings: tuple[str, ...] | None = None
                 ) -> dict[str, np.ndarray]:
    """setting -> [R] AP of each resample (fractions); `weights` from `resample_weights`.

    A resample that draws no face of a setting has no AP for it (NaN)."""
    matches = result.matches
    if matches is None:
        raise ValueError("this EvalResult carries no per-prediction matches (made by an older evaluator); "
                         "evaluate again with ffcore.eval.evaluate")
    weights = np.asarray(weights)
    if weights.ndim != 2 or weights.shape[1] != matches.num_images:
        raise ValueError(f"weights must be [resamples, {matches.num_images}] (one column per validation image), "
                         f"got {weights.shape}")
    thresholds = score_thresholds()
    dense = weights.astype(np.float64)
    out = {}
    for setting in settings or tuple(matches.counted):
        proposals = dense @ _per_image_curves(matches, matches.counted[setting], thresholds)
        true_positives = dense @ _per_image_curves(matches, matches.true_positive[setting], thresholds)
        faces = dense @ matches.faces_per_image[setting].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = true_positives / proposals
            recall = true_positives / faces[:, None]
        ap = _voc_ap_rows(np.nan_to_num(recall, nan=0.0), precision)
        ap[faces == 0] = np.nan
        out[setting] = ap
    return out


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval (same unit as the estimate)."""

    estimate: float
    low: float
    high: float
    level: float = DEFAULT_LEVEL

    @property
    def contains_zero(self) -> bool:
        return self.low <= 0.0 <= self.high

    def scaled(self, factor: float) -> "Interval":
        return Interval(self.estimate * factor, self.low * factor, self.high * factor, self.level)

    def __str__(self) -> str:
        return f"{self.estimate:.2f} [{self.low:.2f}, {self.high:.2f}]"


def percentile_interval(estimate: float, samples: np.ndarray, level: float = DEFAULT_LEVEL) -> Interval:
    """The central `level` interval of the bootstrap samples (NaN resamples left out)."""
    finite = np.asarray(samples, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return Interval(float(estimate), float("nan"), float("nan"), level)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high), level)


def ap_intervals(result: EvalResult, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                 level: float = DEFAULT_LEVEL) -> dict[str, Interval]:
    """setting -> AP (fraction) with its bootstrap interval over validation images."""
    weights = resample_weights(result.num_images, resamples, seed)
    samples = bootstrap_ap(result, weights)
    return {s: percentile_interval(result.ap[s], samples[s], level) for s in samples}


def paired_difference(result: EvalResult, reference: EvalResult, resamples: int = DEFAULT_RESAMPLES,
                      seed: int = 0, level: float = DEFAULT_LEVEL) -> dict[str, "PooledDifference"]:
    """setting -> AP(result) - AP(reference) with the paired bootstrap interval (same resampled images).

    Two single runs: the interval covers the validation images only, and `verdict` of it is
    `ONE_SEED` (a retraining of either run may move it by more than the interval is wide)."""
    return pooled_difference({0: result}, {0: reference}, resamples=resamples, seed=seed, level=level)


ONE_SEED = "one seed: not established"
# how a pooled interval is made, in the words of captions, legends and paragraphs
POOLED_METHOD = "two-stage t interval: t over the training seeds, widened by the images' shared variance"
NO_INTERVAL = "no interval"
INSIDE_NOISE = "inside the noise"


def verdict(difference: Interval, unit: str = "AP points") -> str:
    """What a difference establishes: `ONE_SEED` when an arm of a `PooledDifference` has a single
    training seed; else "inside the noise" when its interval contains 0, else "higher" / "lower".

    A bare `Interval` (no seed counts) is read by its interval alone: callers comparing trained
    models pass the `PooledDifference` that `pooled_difference` / `paired_difference` return."""
    if isinstance(difference, PooledDifference) and min(difference.seeds) < 2:
        return ONE_SEED
    if not np.isfinite(difference.low):
        return NO_INTERVAL
    if difference.contains_zero:
        return INSIDE_NOISE
    return "higher" if difference.estimate > 0 else "lower"


# ----------------------------------------------------------------------------- seeds and images

@dataclass(frozen=True)
class PooledDifference(Interval):
    """A difference of two arms' mean AP over their seeds, with its two-stage t interval.

    `seeds`: (seeds of the arm, seeds of the reference); `paired_seeds`: whether both arms had
    the same seeds (the seed-level values are then the per-seed paired differences);
    `degrees_of_freedom`: the t interval's (NaN for the percentile image interval of two single runs)."""

    seeds: tuple[int, int] = (1, 1)
    paired_seeds: bool = True
    degrees_of_freedom: float = float("nan")

    def scaled(self, factor: float) -> "PooledDifference":
        return _replace(self, estimate=self.estimate * factor, low=self.low * factor, high=self.high * factor)


def _ordered(arm: Mapping[int, EvalResult], what: str) -> tuple[list[int], list[EvalResult]]:
    if not arm:
        raise ValueError(f"{what}: an arm needs at least one training seed's result")
    seeds = sorted(arm)
    return seeds, [arm[s] for s in seeds]


def _check_same_images(results: list[EvalResult]) -> int:
    counts = {r.num_images for r in results}
    if len(counts) != 1:
        labels = ", ".join(f"{r.label or '?'}: {r.num_images}" for r in results)
        raise ValueError(f"a comparison paired on images needs the same evaluation images in every run ({labels})")
    return counts.pop()


def _stacked_samples(results: list[EvalResult], weights: np.ndarray) -> dict[str, np.ndarray]:
    """setting -> [S, R] AP of every seed's run in every image resample."""
    per_run = [bootstrap_ap(r, weights) for r in results]
    return {s: np.stack([samples[s] for samples in per_run]) for s in per_run[0]}


def _values(results: list[EvalResult], setting: str) -> np.ndarray:
    return np.array([float(r.ap[setting]) for r in results])


def pooled_difference(arm: Mapping[int, EvalResult], reference: Mapping[int, EvalResult],
                      resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = DEFAULT_LEVEL
                      ) -> dict[str, PooledDifference]:
    """setting -> mean AP of `arm` over its seeds minus that of `reference`, with the two-stage
    t interval over seeds and images (training seed -> result of that seed's run).

    One set of image resamples (`resample_weights` with this seed) serves every run. Both arms
    with the same seeds: the per-seed paired differences are the seed-level values; otherwise
    each arm is a component of its own (Welch). One run on each side: the percentile interval of
    the paired image bootstrap (`paired_difference`)."""
    arm_seeds, arm_results = _ordered(arm, "pooled_difference(arm)")
    ref_seeds, ref_results = _ordered(reference, "pooled_difference(reference)")
    num_images = _check_same_images(arm_results + ref_results)
    paired = arm_seeds == ref_seeds
    weights = resample_weights(num_images, resamples, seed)
    ours, theirs = _stacked_samples(arm_results, weights), _stacked_samples(ref_results, weights)
    counts = (len(arm_seeds), len(ref_seeds))
    out = {}
    for s in ours:
        mine, yours = _values(arm_results, s), _values(ref_results, s)
        if counts == (1, 1):
            interval = percentile_interval(float(mine[0] - yours[0]), ours[s][0] - theirs[s][0], level)
            out[s] = PooledDifference(interval.estimate, interval.low, interval.high, level, seeds=counts,
                                      paired_seeds=paired)
            continue
        estimate = seed_difference(mine, ours[s], yours, theirs[s], num_images, paired)
        low, high = estimate.bounds(level)
        out[s] = PooledDifference(estimate.estimate, low, high, level, seeds=counts, paired_seeds=paired,
                                  degrees_of_freedom=estimate.degrees_of_freedom)
    return out


def pooled_ap(arm: Mapping[int, EvalResult], resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
              level: float = DEFAULT_LEVEL) -> dict[str, Interval]:
    """setting -> mean AP over the arm's seeds with its two-stage t interval (seeds and images);
    one run: its percentile image interval."""
    _, results = _ordered(arm, "pooled_ap")
    num_images = _check_same_images(results)
    samples = _stacked_samples(results, resample_weights(num_images, resamples, seed))
    out = {}
    for s in samples:
        values = _values(results, s)
        if values.size == 1:
            out[s] = percentile_interval(float(values[0]), samples[s][0], level)
            continue
        estimate = two_stage_estimate([SeedComponent(values, samples[s])], num_images)
        out[s] = Interval(estimate.estimate, *estimate.bounds(level), level)
    return out
