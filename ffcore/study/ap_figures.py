"""Figures of a study's APs: the intervals, the paired differences coloured by verdict, the
precision–recall curves and the AP bars. The numbers come from `ffcore.study.evaluation`
(each run evaluated once, cached); these functions only draw and save them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ffcore.data.ground_truth import SETTINGS
from ffcore.report.tables import read_table
from ffcore.runs.context import Study
from ffcore.runs.datasets import evaluation_split
from ffcore.study.evaluation import ap_frame, ap_headline, difference_headline, evaluate_run, run_label


def intervals_figure(study: Study, runs: list[str], name: str = "ap_intervals"):
    """AP (%) with its 95 % bootstrap interval, one row per run, one panel per setting; each run in
    its model's colour. Each panel's axis spans its own values, so an interval a few points wide
    stays wider than its marker."""
    from ffcore.report.plotting import model_styles, new_figure

    table = ap_frame(study, runs).reset_index(drop=True)
    styles = model_styles(table["run"])
    labels = [_wrapped(run_label(study, run)) for run in table["run"]]
    fig, axes = new_figure(ncols=3, aspect=0.18 + 0.075 * len(table), sharey=True)
    rows = np.arange(len(table))
    for ax, setting in zip(axes[0], SETTINGS):
        for row, (_, entry) in zip(rows, table.iterrows()):
            colour = styles[entry["run"]]["color"]
            value, low, high = entry[f"AP {setting} %"], entry[f"{setting} CI low"], entry[f"{setting} CI high"]
            ax.errorbar(value, row, xerr=[[value - low], [high - value]], fmt="o", color=colour, markersize=3.5,
                        elinewidth=1.6, capsize=2.5)
        _pad_axis(ax, table[f"{setting} CI low"], table[f"{setting} CI high"])
        ax.set_title(setting, pad=4)
        ax.xaxis.set_major_locator(_ticks())
    axes[0][0].set_yticks(rows, labels)
    axes[0][0].invert_yaxis()
    # the split the APs come from (the held-out test split where the data has one), named on the axis
    fig.supxlabel(f"AP (%) with its 95% bootstrap interval over the {evaluation_split(study).name} images", fontsize=8)
    return study.save_figure(fig, name, checkpoints=runs, headline=ap_headline(table))


def _wrapped(label: str, width: int = 34) -> str:
    """A long row label over two or three lines, so the panels keep most of the figure's width."""
    import textwrap

    return "\n".join(textwrap.wrap(label, width))


def _ticks():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10])


def _pad_axis(ax, lows, highs, include: float | None = None) -> None:
    """Limits around every interval (and `include`, e.g. the 0 of a difference) with a margin."""
    values = [float(v) for v in (*lows, *highs) if pd.notna(v)] + ([include] if include is not None else [])
    low, high = min(values), max(values)
    margin = max(0.08 * (high - low), 0.5)
    ax.set_xlim(low - margin, high + margin)


# One colour per verdict in every differences figure (Okabe-Ito, grey for "inside the noise").
VERDICT_COLOURS = {"higher": "#009E73", "lower": "#D55E00", "inside the noise": "#999999",
                   "one seed: not established": "#CC79A7", "no interval": "#000000"}


MEAN_COLOUR = "#000000"


def differences_figure(study: Study, table_name: str, name: str | None = None):
    """Paired differences (AP points) with their 95 % intervals from a comparison table, 0 marked, one
    colour per verdict. A seed comparison's `pooled` row (the difference of the arms' means with its
    two-stage t interval, the row the verdict is read from) is drawn as a diamond below its seeds."""
    from matplotlib.lines import Line2D

    from ffcore.report.plotting import new_figure

    table = read_table(study, table_name).rename(columns={"model": "run"})   # ablation tables name rows by model
    table["vs"] = table["vs"].astype(object).fillna("")      # an empty cell reads back as NaN
    pooled_rows = table["run"] == "pooled"    # seed comparisons: the row that carries the verdict
    compared = table[(table["vs"] != "") | pooled_rows].reset_index(drop=True)
    if compared.empty:
        # a profile that trains none of the table's comparisons (synthetic_long trains no swap): nothing to draw
        print(f"{table_name}: no comparison in this profile's table, so no figure (the table holds its reference only)")
        return None
    pooled = (compared["run"] == "pooled").to_numpy()
    comparison = compared["comparison"] if "comparison" in compared else compared["run"]
    labels = [f"pooled over seeds ({seeds}):\n{_wrapped(str(c), 44)}" if is_pooled
              else f"{_wrapped(run_label(study, r), 44)}\nvs {_wrapped(run_label(study, v), 41)}"
              for r, v, is_pooled, c, seeds in zip(compared["run"], compared["vs"], pooled, comparison,
                                                    compared.get("seeds", compared["run"]))]
    rows = np.arange(len(labels))
    fig, axes = new_figure(ncols=3, aspect=0.2 + 0.085 * len(labels), sharey=True)
    present = []
    for ax, setting in zip(axes[0], SETTINGS):
        lows, highs = list(compared[f"d{setting} CI low"]), list(compared[f"d{setting} CI high"])
        for row, is_pooled, (_, entry) in zip(rows, pooled, compared.iterrows()):
            verdict = entry[f"{setting} verdict"]
            if verdict not in VERDICT_COLOURS:
                raise ValueError(f"{study.tables_dir / table_name}.csv: unknown verdict {verdict!r} in row "
                                 f"{entry['run']!r} ({setting}); known: {', '.join(VERDICT_COLOURS)}")
            present.append(verdict)
            value = entry[f"d{setting} AP pts"]
            error = [[value - entry[f"d{setting} CI low"]], [entry[f"d{setting} CI high"] - value]]
            ax.errorbar(value, row, xerr=None if verdict == "no interval" else error, fmt="D" if is_pooled else "o",
                        markersize=4.5 if is_pooled else 3.5, color=VERDICT_COLOURS[verdict],
                        markeredgecolor=MEAN_COLOUR if is_pooled else VERDICT_COLOURS[verdict],
                        elinewidth=2.2 if is_pooled else 1.6, capsize=2.5)
        ax.axvline(0, color="black", lw=0.8, ls="--")
        _pad_axis(ax, lows, highs, include=0.0)
        ax.xaxis.set_major_locator(_ticks())
        ax.set_title(setting, pad=4)
        for row in rows[pooled]:
            ax.axhline(row - 0.5, color="0.6", lw=0.6)
    axes[0][0].set_yticks(rows, labels)
    axes[0][0].invert_yaxis()
    handles = [Line2D([], [], color=VERDICT_COLOURS[v], marker="o", markersize=4, lw=1.6, label=v)
               for v in VERDICT_COLOURS if v in present]
    if pooled.any():
        handles.append(Line2D([], [], color="0.5", marker="D", markeredgecolor=MEAN_COLOUR, markersize=4.5, lw=2.2,
                              label="pooled over seeds (two-stage t interval)"))
    # above the panels: the provenance stamp goes below the figure
    fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 3), fontsize=7, frameon=False)
    fig.supxlabel("difference in AP (points) with its paired 95% bootstrap interval", fontsize=8)
    checkpoints = sorted((set(compared["run"]) | set(compared["vs"])) - {"", "pooled"})
    return study.save_figure(fig, name or f"{table_name}_intervals", checkpoints=checkpoints,
                             headline=difference_headline(compared))


def pr_curves_figure(study: Study, runs: list[str], name: str = "pr_curves"):
    """Precision–recall curves (ffcore.eval.plots), one panel per setting, one line per run."""
    from ffcore.eval.plots import draw_pr_curves, percent_label
    from ffcore.report.plotting import model_styles

    results = [evaluate_run(study, run) for run in runs]
    styles = model_styles(runs)
    fig = draw_pr_curves(results, labels=[run_label(study, run) for run in runs],
                         colours=[styles[run]["color"] for run in runs],
                         title=f"WIDER FACE protocol, test scale {study.profile.eval_scale}")
    study.save_figure(fig, name, checkpoints=runs, test_scale=str(study.profile.eval_scale),
                      headline="; ".join(f"{r}: hard AP {percent_label(res.ap['hard'])}%"
                                         for r, res in zip(runs, results)))
    return fig


def ap_bars_figure(study: Study, runs: list[str], name: str = "ap_bars"):
    """Grouped bars of AP per setting for several runs."""
    from ffcore.report.plotting import model_styles, new_figure

    table = ap_frame(study, runs)
    styles = model_styles(table["run"])
    fig, ax = new_figure(aspect=0.45)
    width = 0.8 / len(runs)
    for index, (_, row) in enumerate(table.iterrows()):
        values = [row[f"AP {s} %"] for s in SETTINGS]
        errors = [[row[f"AP {s} %"] - row[f"{s} CI low"] for s in SETTINGS],
                  [row[f"{s} CI high"] - row[f"AP {s} %"] for s in SETTINGS]]
        positions = np.arange(3) + (index - (len(runs) - 1) / 2) * width
        bars = ax.bar(positions, values, width, yerr=errors, capsize=2, color=styles[row["run"]]["color"],
                      label=f"{run_label(study, row['run'])} ({row['parameters']:,} params)")
        ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=1)   # values read from the table: its rounding
    ax.set_xticks(range(3))
    ax.set_xticklabels(SETTINGS)
    ax.set_ylabel("AP (%), bars: 95% bootstrap interval")
    fig.legend(loc="outside upper center", ncol=2, fontsize=7, frameon=False)   # above the bars, never over one
    return study.save_figure(fig, name, checkpoints=runs,
                             headline="; ".join(f"{row['run']}: hard {row['AP hard %']:.1f}%"
                                                for _, row in table.iterrows()))
