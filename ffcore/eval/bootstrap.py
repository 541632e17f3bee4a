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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ffcore.eval.protocol import EvalResult, PredictionMatches, score_thresholds

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
                      seed: int = 0, level: float = DEFAULT_LEVEL) -> dict[str, Interval]:
    """setting -> AP(result) - AP(reference) with the paired bootstrap interval (same resampled images)."""
    if result.num_images != reference.num_images:
        raise ValueError(f"a paired comparison needs the same validation images: {result.label or 'result'} has "
                         f"{result.num_images}, {reference.label or 'reference'} {reference.num_images}")
    weights = resample_weights(result.num_images, resamples, seed)
    ours, theirs = bootstrap_ap(result, weights), bootstrap_ap(reference, weights)
    return {s: percentile_interval(result.ap[s] - reference.ap[s], ours[s] - theirs[s], level) for s in ours}


def verdict(difference: Interval, unit: str = "AP points") -> str:
    """"inside the noise" when the interval of a difference contains 0, else which way it goes."""
    if not np.isfinite(difference.low):
        return "no interval"
    if difference.contains_zero:
        return "inside the noise"
    return "higher" if difference.estimate > 0 else "lower"


def intervals_by_setting(intervals: Mapping[str, Interval], percent: bool = True) -> dict[str, str]:
    """{"AP easy %": "88.10 [85.2, 90.7]", ...} for tables."""
    factor = 100.0 if percent else 1.0
    return {f"AP {s} %": str(i.scaled(factor)) for s, i in intervals.items()}
