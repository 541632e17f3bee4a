"""Figures of evaluation results (made by `ffcore.report.plotting.new_figure`, the project's one figure
factory; saving and provenance stamps are the caller's, through `ffcore.report.provenance.write_figure`).

- `draw_pr_curves`: precision-recall curves, one panel per setting, each panel's APs (%)
  ranked in its corner and the runs named once below.
- `recall_by_size_figure`: recall of the counted faces per face-size bin, where small faces
  get lost.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ffcore.data.ground_truth import SETTINGS, GroundTruth
from ffcore.eval.protocol import EvalResult, recall_by_face_size

# The study's tables keep AP in % to two decimals and print one; every figure rounds the same way
# (to two decimals, then to one), so a figure never prints 78.4 beside a table's 78.5.
TABLE_DECIMALS = 2


def percent_label(fraction: float) -> str:
    """An AP (a fraction) as the tables print it: "78.5" for 0.784478 (78.45 in the CSV)."""
    return f"{round(100 * float(fraction), TABLE_DECIMALS):.1f}"

DEFAULT_SIZE_BINS = (0, 10, 16, 24, 32, 48, 64, 128, 256, np.inf)


def _as_list(results: EvalResult | Sequence[EvalResult]) -> list[EvalResult]:
    return [results] if isinstance(results, EvalResult) else list(results)


def _labels(results: list[EvalResult], labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        if len(labels) != len(results):
            raise ValueError(f"{len(labels)} labels for {len(results)} results")
        return list(labels)
    return [r.label or f"result {i + 1}" for i, r in enumerate(results)]


def draw_pr_curves(results: EvalResult | Sequence[EvalResult], labels: Sequence[str] | None = None,
                     settings: Sequence[str] = SETTINGS, title: str | None = None,
                     colours: Sequence[str] | None = None):
    """One precision-recall panel per setting (recall and precision in %). The runs are named once, in a
    legend below the panels; each panel lists its APs (%) in its lower left corner, where a PR curve
    never goes (precision is high at low recall)."""
    results = _as_list(results)
    labels = _labels(results, labels)
    from ffcore.report.plotting import PALETTE, TEXT_WIDTH, new_figure

    colours = list(colours) if colours is not None else [PALETTE[i % len(PALETTE)] for i in range(len(results))]
    if len(colours) != len(results):
        raise ValueError(f"{len(colours)} colours for {len(results)} results")
    figure, axes = new_figure(ncols=len(settings), width=TEXT_WIDTH, aspect=0.42, sharey=True)
    axes = axes[0]
    for ax, setting in zip(axes, settings):
        lines = []
        for result, label, colour in zip(results, labels, colours):
            curve = result[setting]
            valid = ~np.isnan(curve.precision)
            line, = ax.plot(100 * curve.recall[valid], 100 * curve.precision[valid], color=colour, linewidth=1.2,
                            label=label)
            lines.append((curve.ap, line))
        ranked = sorted(lines, key=lambda entry: -entry[0])
        ax.legend([line for _, line in ranked], [percent_label(ap) for ap, _ in ranked], title="AP (%)",
                  loc="lower left", fontsize=8, title_fontsize=8, handlelength=1.2, frameon=True, framealpha=0.9)
        ax.set_title(f"{setting.capitalize()} set")
        ax.set_xlabel("recall (%)")
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 101)
    axes[0].set_ylabel("precision (%)")
    # above the panels, titled with the figure's title: a legend below meets the provenance stamp, and
    # a suptitle beside an outside legend is drawn over it by the constrained layout
    long_labels = max(map(len, labels)) > 40
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center",
                  ncol=1 if long_labels or len(results) > 3 else len(results), fontsize=7, frameon=False,
                  title=title, title_fontsize=9)
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

    from ffcore.report.plotting import new_figure

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
