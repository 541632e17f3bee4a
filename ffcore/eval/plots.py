"""Figures of evaluation results (made by `ffcore.plotting.new_figure`, the project's one figure
factory; saving and provenance stamps are the caller's, through `ffcore.provenance.write_figure`).

- `pr_curves_figure`: precision-recall curves in the WIDER FACE leaderboard style, one panel
  per setting, legend "AP name" sorted by AP.
- `recall_by_size_figure`: recall of the counted faces per face-size bin, where small faces
  get lost.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ffcore.data.ground_truth import SETTINGS, GroundTruth
from ffcore.eval.protocol import EvalResult, recall_by_face_size

DEFAULT_SIZE_BINS = (0, 10, 16, 24, 32, 48, 64, 128, 256, np.inf)


def _as_list(results: EvalResult | Sequence[EvalResult]) -> list[EvalResult]:
    return [results] if isinstance(results, EvalResult) else list(results)


def _labels(results: list[EvalResult], labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        if len(labels) != len(results):
            raise ValueError(f"{len(labels)} labels for {len(results)} results")
        return list(labels)
    return [r.label or f"result {i + 1}" for i, r in enumerate(results)]


def pr_curves_figure(results: EvalResult | Sequence[EvalResult], labels: Sequence[str] | None = None,
                     settings: Sequence[str] = SETTINGS, title: str | None = None):
    """One precision-recall panel per setting; each curve's legend entry starts with its AP."""
    results = _as_list(results)
    labels = _labels(results, labels)
    from ffcore.plotting import new_figure

    width = 4.2 * len(settings)
    figure, axes = new_figure(ncols=len(settings), width=width, aspect=4.0 / width, sharey=True)
    axes = axes[0]
    colours = [f"C{i % 10}" for i in range(len(results))]
    for ax, setting in zip(axes, settings):
        entries = sorted(((r[setting].ap, label, colour, r[setting]) for r, label, colour in
                          zip(results, labels, colours)), key=lambda e: -e[0])
        for ap, label, colour, curve in entries:
            valid = ~np.isnan(curve.precision)
            ax.plot(curve.recall[valid], curve.precision[valid], color=colour, linewidth=1.6,
                    label=f"{ap:.3f} {label}")
        ax.set_title(f"{setting.capitalize()} set")
        ax.set_xlabel("Recall")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.grid(True, linewidth=0.5, alpha=0.5)
        ax.legend(loc="lower left", fontsize=8, frameon=True)
    axes[0].set_ylabel("Precision")
    if title:
        figure.suptitle(title)
    return figure


def recall_by_size_figure(results: EvalResult | Sequence[EvalResult], ground_truth: GroundTruth,
                          setting: str = "hard", bins: Sequence[float] = DEFAULT_SIZE_BINS,
                          score_threshold: float = 0.0, labels: Sequence[str] | None = None,
                          title: str | None = None):
    """Grouped bars: recall per face-size bin (size = sqrt(w * h), pixels of the original image).

    A face counts as found when the protocol matched it to a prediction with normalised score
    >= `score_threshold` (0: every prediction, i.e. the end of the PR curve). The number of
    faces per bin is drawn as a grey line on a second axis.
    """
    results = _as_list(results)
    labels = _labels(results, labels)
    bins = tuple(bins)
    per_result = [recall_by_face_size(r, ground_truth, setting, bins, score_threshold) for r in results]
    n_bins = len(bins) - 1
    names = [f"{bins[i]:g}-{bins[i + 1]:g}" if np.isfinite(bins[i + 1]) else f">{bins[i]:g}" for i in range(n_bins)]

    from ffcore.plotting import new_figure

    width = max(6.0, 0.8 * n_bins + 2)
    figure, ax = new_figure(width=width, aspect=4.0 / width)
    width = 0.8 / max(len(results), 1)
    x = np.arange(n_bins)
    for k, (stats, label) in enumerate(zip(per_result, labels)):
        overall = stats["found"].sum() / max(stats["faces"].sum(), 1)
        ax.bar(x - 0.4 + width * (k + 0.5), np.nan_to_num(stats["recall"]), width,
               color=f"C{k % 10}", label=f"{label} (recall {overall:.3f})")
    ax.set_xticks(x, names, rotation=30)
    ax.set_xlabel("face size sqrt(w*h) (px)")
    ax.set_ylabel(f"recall ({setting} faces)")
    ax.set_ylim(0, 1.3)                 # head room for the legend above the bars
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.grid(True, axis="y", linewidth=0.5, alpha=0.5)
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    counts = ax.twinx()
    faces = per_result[0]["faces"]
    counts.plot(x, faces, color="0.4", marker="o", linewidth=1, label="faces")
    counts.set_ylabel("faces per bin", color="0.4")
    counts.set_ylim(0, 2.5 * max(int(faces.max()), 1))   # keep the count line below the bar tops
    if title:
        ax.set_title(title)
    return figure
