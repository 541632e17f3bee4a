"""AP tables, precision–recall curves and detection pictures of a study's runs.

APs follow the official WIDER FACE protocol (`ffcore.eval`) on the study's evaluation split
(`ffcore.study.datasets.evaluation_split`: the held-out test split when the dataset has one,
else the validation split, as on WIDER FACE, which publishes no test labels). Each run's result
is cached in results/<profile>/cache/eval_<run>.json keyed by the checkpoint hash, the model's
code, the evaluator's code, the split and the test settings, so later notebooks reuse it instead
of re-predicting.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ffcore.data.ground_truth import SETTINGS
from ffcore.provenance import dataset_fingerprint
from ffcore.study.context import Study
from ffcore.study.datasets import evaluation_split
from ffcore.study.training import ensure_checkpoint, model_of_run

DETECTION_THRESHOLD = 0.5
MAX_DRAWN = 60


def load_run_model(study: Study, run: str):
    """The run's trained model (best.pt) in eval mode on the study's device; trains it first if missing."""
    from ffcore.models import load_pretrained

    checkpoint = ensure_checkpoint(study, run)
    return load_pretrained(model_of_run(run), checkpoint).to(study.device).eval()


# Where the code that decides an AP starts: the evaluator, the inference path, and the modules that
# select and order the evaluation images (the validation index and the tree layout). Everything they
# import inside ffcore is followed (`evaluation_modules`), so a helper they come to use counts without
# a list kept by hand; the model code has a version of its own (`model_code_version`).
_EVALUATION_ROOTS = ("ffcore.eval.protocol", "ffcore.eval.inference", "ffcore.eval.predict",
                     "ffcore.eval.predictions", "ffcore.data.ground_truth", "ffcore.data.validation",
                     "ffcore.data.layout", "ffcore.postprocess", "ffcore.anchors", "ffcore.boxes",
                     "ffcore.preprocess")
_MODEL_PACKAGE = "ffcore.models"


def _ffcore_imports(name: str) -> set[str]:
    """The ffcore modules `name` imports (module level or inside functions), read from its source."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ImportError(f"evaluation code version: module {name} not found")
    found = set()
    for node in ast.walk(ast.parse(Path(spec.origin).read_text(), filename=spec.origin)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("ffcore"):
            found.add(node.module)
            for alias in node.names:      # `from ffcore.eval import protocol` imports a module
                if importlib.util.find_spec(node.module).submodule_search_locations is not None and \
                        importlib.util.find_spec(f"{node.module}.{alias.name}") is not None:
                    found.add(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("ffcore"))
    return found


def evaluation_modules() -> tuple[str, ...]:
    """Every ffcore module reachable by import from `_EVALUATION_ROOTS`, the model package left out."""
    seen, pending = set(), list(_EVALUATION_ROOTS)
    while pending:
        name = pending.pop()
        if name in seen or name == _MODEL_PACKAGE or name.startswith(_MODEL_PACKAGE + "."):
            continue
        seen.add(name)
        pending.extend(_ffcore_imports(name) - seen)
    return tuple(sorted(seen))


def evaluation_code_version() -> str:
    """SHA-256 prefix of the source files of `evaluation_modules()`, each with its name (read from disk)."""
    import hashlib
    import importlib.util

    digest = hashlib.sha256()
    for name in evaluation_modules():
        digest.update(name.encode())
        digest.update(Path(importlib.util.find_spec(name).origin).read_bytes())
    return digest.hexdigest()[:16]


def model_code_version(package_root: Path | None = None) -> str:
    """SHA-256 prefix of the files that decide what a checkpoint computes: every source file of
    `ffcore/models` (parts, assembly, registry, weight loading) and `ffcore/postprocess.py`.

    The same checkpoint under changed model code is another detector: a cached AP keyed on
    the checkpoint alone would outlive the change. Files are read from disk, by path, so a
    module nothing imported yet counts as well."""
    import hashlib

    import ffcore

    root = Path(package_root) if package_root is not None else Path(ffcore.__file__).parent
    files = sorted((root / "models").rglob("*.py")) + [root / "postprocess.py"]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _cache_key(study: Study, run: str) -> dict:
    split = evaluation_split(study)
    return {"checkpoint": study.used_checkpoints[run], "model_code": model_code_version(),
            "evaluator_code": evaluation_code_version(), "scale": str(study.profile.eval_scale),
            "limit": study.profile.eval_limit, "data_root": str(study.data_root),
            "split": split.name, "evaluation_root": str(split.root),
            # the data themselves: a test split regenerated in place (another seed) is other images
            "dataset": dataset_fingerprint(study.data_root)}


def evaluate_run(study: Study, run: str):
    """The `ffcore.eval.EvalResult` of a run on the study's evaluation split (`evaluation_split`).

    Cached in results/<profile>/cache/eval_<run>.pt (a state file read with the safe loader:
    a results folder handed over cannot run code) with its key (checkpoint hash, model and
    evaluator code versions, test settings) in eval_<run>.json: a different key recomputes; a cache
    whose key matches but cannot be read is an error naming the file (delete it to recompute)."""
    import torch

    from ffcore.checkpoint import CheckpointError, load_state_file, save_state_file
    from ffcore.eval.predict import evaluate_model
    from ffcore.eval.protocol import EvalResult, PredictionMatches, SettingResult

    checkpoint = ensure_checkpoint(study, run)
    cache, key_file = study.cache_dir / f"eval_{run}.pt", study.cache_dir / f"eval_{run}.json"
    key = _cache_key(study, run)
    if cache.is_file() and key_file.is_file() and json.loads(key_file.read_text()) == key:
        try:
            return load_state_file(cache, (EvalResult, SettingResult, PredictionMatches))
        except CheckpointError as exc:
            raise RuntimeError(f"AP cache {cache} matches its key but cannot be read ({type(exc).__name__}: {exc}); "
                               f"delete it (and {key_file.name}) to recompute") from exc
    model = load_run_model(study, run)
    with torch.inference_mode():
        result = evaluate_model(model, evaluation_split(study).root, scale=study.profile.eval_scale, device=study.device,
                                limit=study.profile.eval_limit, out_dir=study.predictions_dir / run,
                                progress=False, checkpoint=checkpoint)
    study.cache_dir.mkdir(parents=True, exist_ok=True)
    save_state_file(cache, result)
    key_file.write_text(json.dumps(key, indent=1) + "\n")
    return result


def _intervals(study: Study, run: str) -> dict:
    """setting -> Interval (AP fraction) of a run, from `resamples` draws of the evaluation images."""
    from ffcore.eval.bootstrap import ap_intervals

    return ap_intervals(evaluate_run(study, run), resamples=study.profile.bootstrap_resamples, seed=study.profile.seed)


def ap_frame(study: Study, runs: list[str]) -> pd.DataFrame:
    """AP (%) per run and setting with its 95 % bootstrap interval over the evaluation images, parameter
    counts and what the weights were trained on (no artifact written)."""
    from ffcore.study.architecture import model_summary
    from ffcore.study.training import trained_on

    rows = []
    for run in runs:
        result = evaluate_run(study, run)
        intervals = _intervals(study, run)
        summary = model_summary(model_of_run(run), study.profile.flops_size)
        row = {"run": run, "trained on": trained_on(study.profile, study.dataset, run), "parameters": summary["parameters"]}
        for s in SETTINGS:
            interval = intervals[s].scaled(100)
            row[f"AP {s} %"] = round(interval.estimate, 2)
            row[f"{s} CI low"] = round(interval.low, 2)
            row[f"{s} CI high"] = round(interval.high, 2)
        row.update({"split": evaluation_split(study).name, "images": result.num_images,
                    "checkpoint": study.used_checkpoints[run]})
        rows.append(row)
    return pd.DataFrame(rows)


def _ap_headline(table: pd.DataFrame) -> str:
    return "; ".join(f"{row['run']}: " + "/".join(f"{row[f'AP {s} %']:.1f}" for s in SETTINGS)
                     + f" (E/M/H AP %, hard 95% CI {row['hard CI low']:.1f}-{row['hard CI high']:.1f})"
                     for _, row in table.iterrows())


def evaluate_runs(study: Study, runs: list[str], name: str = "ap") -> pd.DataFrame:
    """WIDER FACE-protocol AP (easy / medium / hard) of runs on the study's evaluation split, each with
    its 95 % bootstrap interval over the evaluation images."""
    table = ap_frame(study, runs)
    scale = study.profile.eval_scale
    split = evaluation_split(study)
    study.save_table(table, name, checkpoints=runs, test_scale=str(scale), split=split.name,
                     resamples=study.profile.bootstrap_resamples,
                     caption=f"AP on the {split.note} (WIDER FACE protocol, test scale {scale}) with 95% "
                             f"bootstrap intervals over its images ({study.profile.bootstrap_resamples} "
                             "resamples)",
                     headline=_ap_headline(table))
    return table


def markdown(text: str):
    """Text for a notebook cell to render (IPython's Markdown; the plain string outside IPython)."""
    try:
        from IPython.display import Markdown
    except ImportError:   # plain Python: the text itself
        return text
    return Markdown(text)


def what_this_shows(study: Study, name: str):
    """"What this shows", from an artifact's sidecar headline (its numbers are the artifact's own)."""
    for sidecar in (study.tables_dir / f"{name}.json", study.figures_dir / f"{name}.json"):
        if sidecar.is_file():
            record = json.loads(sidecar.read_text())
            return markdown(f"**What this shows.** {record['headline']}.")
    raise FileNotFoundError(f"no artifact named {name!r} in {study.tables_dir} or {study.figures_dir}; "
                            "run the cell that writes it first")


def describe_ap_table(study: Study, name: str = "ap"):
    """A "what this shows" paragraph for an AP table, its numbers read from the written table."""
    table = _read_table(study, name)
    lines = []
    for _, row in table.iterrows():
        lines.append(f"**{row['run']}** ({row['trained on']}): AP easy {row['AP easy %']:.1f} % "
                     f"[{row['easy CI low']:.1f}, {row['easy CI high']:.1f}], medium {row['AP medium %']:.1f} % "
                     f"[{row['medium CI low']:.1f}, {row['medium CI high']:.1f}], hard {row['AP hard %']:.1f} % "
                     f"[{row['hard CI low']:.1f}, {row['hard CI high']:.1f}]")
    images = int(table["images"].iloc[0]) if len(table) else 0
    split = evaluation_split(study)
    return markdown("**What this shows.** On the " + f"{split.images(images)} of the {study.dataset} data "
                    + "(brackets: 95 % bootstrap interval over the images; each row is one training run):\n\n- "
                    + "\n- ".join(lines)
                    + f"\n\nModels whose intervals overlap widely are not told apart by this {split.name} split; "
                      "the paired comparisons say it directly, and only comparisons pooled over several training "
                      "seeds give a verdict."
                    + (" Rows trained on WIDER FACE are real detectors evaluated on the same synthetic images."
                       if study.profile.is_synthetic else ""))


def _read_table(study: Study, name: str) -> pd.DataFrame:
    path = study.tables_dir / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"table {path} does not exist yet; run the cell that writes {name!r} first")
    return pd.read_csv(path, comment="#")


# ----------------------------------------------------------------------------- comparisons

def paired_comparison(study: Study, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """For each (run, reference): AP(run) - AP(reference) per setting with the paired 95 % bootstrap
    interval (same resampled images for both). Two single runs: the verdict is "one seed: not
    established" (`ffcore.eval.bootstrap.verdict`); arms over seeds are `comparisons.seed_comparison`'s."""
    from ffcore.eval.bootstrap import paired_difference, verdict

    rows = []
    for run, reference in pairs:
        differences = paired_difference(evaluate_run(study, run), evaluate_run(study, reference),
                                        resamples=study.profile.bootstrap_resamples, seed=study.profile.seed)
        row = {"run": run, "vs": reference}
        for s in SETTINGS:
            d = differences[s].scaled(100)
            row.update({f"d{s} AP pts": round(d.estimate, 2), f"d{s} CI low": round(d.low, 2),
                        f"d{s} CI high": round(d.high, 2), f"{s} verdict": verdict(d)})
        rows.append(row)
    return pd.DataFrame(rows)


def _difference_headline(table: pd.DataFrame, setting: str = "hard") -> str:
    def label(row) -> str:
        return f"pooled over seeds, {row['comparison']}" if row["run"] == "pooled" else f"{row['run']} vs {row['vs']}"

    return "; ".join(f"{label(row)}: {row[f'd{setting} AP pts']:+.1f} pts hard "
                     f"[{row[f'd{setting} CI low']:+.1f}, {row[f'd{setting} CI high']:+.1f}] "
                     f"({row[f'{setting} verdict']})" for _, row in table.iterrows())


def intervals_figure(study: Study, runs: list[str], name: str = "ap_intervals"):
    """AP (%) with its 95 % bootstrap interval, one row per run, one panel per setting; each run in
    its model's colour. Each panel's axis spans its own values, so an interval a few points wide
    stays wider than its marker."""
    from ffcore.plotting import model_styles, new_figure

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
    return study.save_figure(fig, name, checkpoints=runs, headline=_ap_headline(table))


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


def run_label(study: Study, run: str) -> str:
    """A legend label: `pretty_name` of the run, naming the study's teacher for a run distilled from it."""
    from ffcore.plotting import pretty_name

    return pretty_name(run, teacher=study.profile.teacher)


# One colour per verdict in every differences figure (Okabe-Ito, grey for "inside the noise").
VERDICT_COLOURS = {"higher": "#009E73", "lower": "#D55E00", "inside the noise": "#999999",
                   "one seed: not established": "#CC79A7", "no interval": "#000000"}
MEAN_COLOUR = "#000000"


def differences_figure(study: Study, table_name: str, name: str | None = None):
    """Paired differences (AP points) with their 95 % intervals from a comparison table, 0 marked, one
    colour per verdict. A seed comparison's `pooled` row (the difference of the arms' means with its
    two-stage t interval, the row the verdict is read from) is drawn as a diamond below its seeds."""
    from matplotlib.lines import Line2D

    from ffcore.plotting import new_figure

    table = _read_table(study, table_name).rename(columns={"model": "run"})   # ablation tables name rows by model
    table["vs"] = table["vs"].fillna("")      # an empty cell reads back as NaN
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
                             headline=_difference_headline(compared))


def pr_curves_figure(study: Study, runs: list[str], name: str = "pr_curves"):
    """Precision–recall curves (ffcore.eval.plots), one panel per setting, one line per run."""
    from ffcore.eval.plots import pr_curves_figure as draw_pr_curves
    from ffcore.plotting import model_styles

    results = [evaluate_run(study, run) for run in runs]
    styles = model_styles(runs)
    fig = draw_pr_curves(results, labels=[run_label(study, run) for run in runs],
                         colours=[styles[run]["color"] for run in runs],
                         title=f"WIDER FACE protocol, test scale {study.profile.eval_scale}")
    study.save_figure(fig, name, checkpoints=runs, test_scale=str(study.profile.eval_scale),
                      headline="; ".join(f"{r}: hard AP {100 * float(res.ap['hard']):.1f}%"
                                         for r, res in zip(runs, results)))
    return fig


def ap_bars_figure(study: Study, runs: list[str], name: str = "ap_bars"):
    """Grouped bars of AP per setting for several runs."""
    from ffcore.plotting import model_styles, new_figure

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
        ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)
    ax.set_xticks(range(3))
    ax.set_xticklabels(SETTINGS)
    ax.set_ylabel("AP (%), bars: 95% bootstrap interval")
    fig.legend(loc="outside upper center", ncol=2, fontsize=7, frameon=False)   # above the bars, never over one
    return study.save_figure(fig, name, checkpoints=runs,
                             headline="; ".join(f"{row['run']}: hard {row['AP hard %']:.1f}%"
                                                for _, row in table.iterrows()))


# ----------------------------------------------------------------------------- pictures

def _draw(ax, image_bgr, detections, ground_truth_xyxy=None, title: str = "") -> None:
    import matplotlib.patches as patches

    from ffcore.plotting import PALETTE

    ax.imshow(image_bgr[:, :, ::-1])
    ax.axis("off")
    height, width = image_bgr.shape[:2]
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    if ground_truth_xyxy is not None:
        for x1, y1, x2, y2 in ground_truth_xyxy:
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=0.8, ls="--",
                                           edgecolor="white"))
    shown = slice(0, MAX_DRAWN)   # detections are sorted by score; a barely trained model can have hundreds
    for box, score, points in zip(detections.boxes[shown].tolist(), detections.scores[shown].tolist(),
                                  detections.landmarks[shown].tolist()):
        x1, y1, x2, y2 = box
        ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.0, edgecolor=PALETTE[4]))
        ax.text(x1, y1 - 2, f"{score:.2f}", color=PALETTE[4], fontsize=5)
        ax.scatter(points[0::2], points[1::2], s=2, c=PALETTE[:5], linewidths=0)
    ax.set_title(title, fontsize=8)


def _validation_sample(study: Study):
    """(image path, ground-truth boxes x1 y1 x2 y2) of the validation image with the most faces (<= 40)."""
    from ffcore.data.annotations import read_wider_bbx_gt
    from ffcore.data.layout import WiderFaceLayout

    layout = WiderFaceLayout.discover(study.data_root)
    if layout.val_bbx_gt is None or layout.val_images is None:
        raise FileNotFoundError(f"no validation list under {study.data_root} "
                                "(wider_face_split/wider_face_val_bbx_gt.txt and WIDER_val/images)")
    annotations, _ = read_wider_bbx_gt(layout.val_bbx_gt)
    candidates = [a for a in annotations if 0 < len(a) <= 40] or annotations
    chosen = max(candidates, key=len)
    return layout.val_images / chosen.path, np.asarray(chosen.boxes, dtype=float).reshape(-1, 4)


def validation_detections_figure(study: Study, run: str = "featherface_v1", name: str | None = None):
    """The trained run on a validation image: detections (score >= 0.5) over the dashed ground truth."""
    from ffcore.eval.detect import detect_faces
    from ffcore.plotting import new_figure, pretty_name
    from ffcore.preprocess import read_image
    from ffcore.study.plan import split_seed

    path, ground_truth = _validation_sample(study)
    image = read_image(path)
    model = load_run_model(study, run)
    detections = detect_faces(model, image, threshold=DETECTION_THRESHOLD, device=study.device)
    fig, ax = new_figure(aspect=image.shape[0] / image.shape[1])
    _draw(ax, image, detections, ground_truth,
          f"{run_label(study, run)}: {len(detections)} detections ≥ {DETECTION_THRESHOLD} (top {MAX_DRAWN} drawn) "
          f"({len(ground_truth)} faces, dashed) — {path.parent.name}/{path.name}")
    # named after the model, so that a rerun with shifted seeds (`seed_offset`) writes the same artifact
    return study.save_figure(fig, name or f"detections_{split_seed(run)[0]}", checkpoints=[run], image=path.name,
                             headline=f"{run}: {len(detections)} detections vs {len(ground_truth)} faces on {path.name}")


def real_photo_detections_figure(study: Study, image_name: str = "crowd.jpg", name: str = "real_photo_detections"):
    """RetinaFace-MobileNet-0.25 trained on WIDER FACE (shared weights) on a real photo of the shared folder.

    This artifact uses real data and real trained weights whatever the profile, and says so."""
    from ffcore.checkpoint import file_sha256
    from ffcore.eval.detect import DEFAULT_WEIGHTS, detect_faces, load_detector
    from ffcore.paths import shared_dir
    from ffcore.plotting import new_figure, pretty_name
    from ffcore.preprocess import read_image
    from ffcore.provenance import REAL_PHOTOS, Provenance, write_figure

    weights = shared_dir().joinpath(*DEFAULT_WEIGHTS["retinaface_mnet025"])
    image_path = shared_dir() / "images" / image_name
    if not weights.is_file() or not image_path.is_file():
        fig, ax = new_figure(aspect=0.2)
        ax.axis("off")
        ax.text(0.5, 0.5, f"not available: needs {weights} and {image_path}", ha="center", va="center")
        return fig
    image = read_image(image_path)
    detections = detect_faces(load_detector("retinaface_mnet025", weights, study.device), image,
                              threshold=DETECTION_THRESHOLD, device=study.device)
    fig, ax = new_figure(aspect=image.shape[0] / image.shape[1])
    _draw(ax, image, detections, None, f"{pretty_name('retinaface_mnet025_widerface')}: "
                                       f"{len(detections)} faces with score ≥ {DETECTION_THRESHOLD} on {image_name}")
    # Real photo and real weights: provenance says real photos, not the profile's synthetic data.
    provenance = Provenance(profile=study.profile.name, dataset=REAL_PHOTOS,
                            checkpoints={weights.name: file_sha256(weights)},
                            notes={"image": image_name, "threshold": DETECTION_THRESHOLD,
                                   "weights": "shared RetinaFace-MobileNet-0.25 trained on WIDER FACE"})
    write_figure(fig, study.figures_dir, name, provenance,
                 headline=f"retinaface_mnet025 (WIDER FACE weights): {len(detections)} faces on {image_name}")
    return fig


def dataset_preview_figure(study: Study, name: str = "dataset_preview", count: int = 8):
    """A grid of training images with their boxes and landmarks (synthetic: the generator's preview)."""
    from ffcore.data.synth import preview_grid

    fig = preview_grid(study.data_root, n=count, columns=4)
    return study.save_figure(fig, name, headline=f"{count} training images from {study.dataset} data")


# ----------------------------------------------------------------------------- real photos

REAL_PHOTO_IOU = 0.5


def _greedy_matches(detections, reference) -> int:
    """Detections (score order) matched one-to-one to reference faces at IoU >= 0.5."""
    from ffcore.boxes import iou_matrix

    if len(detections) == 0 or len(reference) == 0:
        return 0
    iou = iou_matrix(detections.boxes, reference.boxes).numpy()
    taken = np.zeros(iou.shape[1], dtype=bool)
    matched = 0
    for row in iou:
        candidates = np.where(~taken & (row >= REAL_PHOTO_IOU))[0]
        if candidates.size:
            taken[candidates[np.argmax(row[candidates])]] = True
            matched += 1
    return matched


def real_photo_check(study: Study, runs: list[str] | None = None, name: str = "real_photo_check") -> pd.DataFrame:
    """What a synthetic AP says about real faces: on each real photo of the shared folder, each run's
    detections at score >= 0.5 against the faces the WIDER FACE-trained detectors find at >= 0.5
    (recall: reference faces found; precision: detections that are reference faces; IoU >= 0.5).

    The references are detectors, not ground truth: the table measures agreement with them.
    `runs` None: every model run of the study trained so far (checkpoint on disk); the recipe questions'
    runs (the training-budget curve, V2's own recipe, the pruning control) train the same models again
    and are left out."""
    from ffcore.paths import shared_dir
    from ffcore.preprocess import read_image
    from ffcore.study.plan import is_own_recipe, is_unpruned_finetune, run_epochs
    from ffcore.study.training import planned_runs, reference_runs, trained_on

    if runs is None:
        runs = [run for run in planned_runs(study.profile) if study.checkpoint_path(run).is_file()
                and run_epochs(run) is None and not is_own_recipe(run) and not is_unpruned_finetune(run)]

    photos = sorted((shared_dir() / "images").glob("*.jpg"))
    references = reference_runs()
    if not photos or not references:
        raise FileNotFoundError(f"the real-photo check needs photos in {shared_dir() / 'images'} and the shared "
                                "WIDER FACE weights; neither may be missing")
    from ffcore.eval.inference import detect_image

    scale = study.profile.real_photo_scale

    def detect(model, pixels):
        return detect_image(model, pixels, scale=scale, device=study.device)

    images = {photo.name: read_image(photo) for photo in photos}
    reference_faces = {(ref, image): detect(load_run_model(study, ref), pixels).above(DETECTION_THRESHOLD)
                       for ref in references for image, pixels in images.items()}
    rows = []
    for run in runs:
        model = load_run_model(study, run)
        for image, pixels in images.items():
            everything = detect(model, pixels)
            found = everything.above(DETECTION_THRESHOLD)
            for ref in references:
                faces = reference_faces[(ref, image)]
                matched = _greedy_matches(found, faces)
                rows.append({"run": run, "trained on": trained_on(study.profile, study.dataset, run), "image": image, "reference": ref,
                             "reference faces": len(faces), f"detections >= {DETECTION_THRESHOLD}": len(found),
                             "matched": matched,
                             "recall %": round(100 * matched / len(faces), 1) if len(faces) else float("nan"),
                             "precision %": round(100 * matched / len(found), 1) if len(found) else float("nan"),
                             "best score": round(float(everything.scores.max()), 3) if len(everything) else 0.0})
    table = pd.DataFrame(rows)
    checkpoints = {**{r: study.used_checkpoints.get(r, "") for r in runs},
                   **{r: study.used_checkpoints.get(r, "") for r in references}}
    # real photos: the numbers are about real data whatever the profile's training data was
    from ffcore.provenance import REAL_PHOTOS, Provenance, write_table
    from ffcore.study.display import CAPTION

    provenance = Provenance(profile=study.profile.name, dataset=REAL_PHOTOS, checkpoints=checkpoints,
                            notes={"images": sorted(images), "threshold": DETECTION_THRESHOLD, "test_scale": scale,
                                   "models trained on": study.dataset,
                                   "reference": "detections of the WIDER FACE-trained detectors, not annotations"})
    main = table[table["reference"] == references[0]]
    caption = (f"Real photos: detections >= {DETECTION_THRESHOLD} against the faces the WIDER FACE-trained "
               f"detectors find (IoU >= {REAL_PHOTO_IOU})")
    table.attrs[CAPTION] = caption   # shown above the table in a notebook
    write_table(table, study.tables_dir, name, provenance, caption=caption,
                headline="; ".join(f"{row['run']} on {row['image']}: {row['matched']}/{row['reference faces']} "
                                   f"{references[0]} faces" for _, row in main.iterrows()))
    return table


def describe_real_photo_check(study: Study, name: str = "real_photo_check"):
    """"What this shows" for the real-photo check, from the written table: recall and precision model
    by model (a model trained over several seeds gives the range over its runs), never pooled."""
    from ffcore.study.plan import split_seed

    table = _read_table(study, name)
    synthetic = table[~table["trained on"].str.contains("WIDER")]
    reference = table["reference"].iloc[0]
    main = synthetic[synthetic["reference"] == reference]
    per_run = main.groupby("run", sort=False)[["matched", "reference faces", "detections >= 0.5"]].sum()
    per_run["recall"] = 100 * per_run["matched"] / per_run["reference faces"]
    per_run["precision"] = 100 * per_run["matched"] / per_run["detections >= 0.5"]   # NaN: no detection
    per_run["model"] = [split_seed(run)[0] for run in per_run.index]
    lines = []
    for model, runs in per_run.groupby("model", sort=False):
        if len(runs) == 1:
            row = runs.iloc[0]
            lines.append(f"{model}: recall {row['recall']:.0f} % ({int(row['matched'])}/{int(row['reference faces'])}), "
                         f"precision {_percent(row['precision'])} ({int(row['matched'])}/{int(row['detections >= 0.5'])})")
        else:
            lines.append(f"{model} ({len(runs)} runs): recall {runs['recall'].min():.0f}-{runs['recall'].max():.0f} %, "
                         "precision " + (f"{runs['precision'].min():.0f}-{runs['precision'].max():.0f} %"
                                         if runs["precision"].notna().all() else "n/a in some runs (no detection)"))
    photos = ", ".join(sorted(main["image"].unique()))
    faces = int(main.groupby("image")["reference faces"].first().sum())
    return markdown(f"**What this shows.** Against the {faces} faces that {reference} finds at >= {DETECTION_THRESHOLD} on "
                    f"the real photos ({photos}), the detections >= {DETECTION_THRESHOLD} of each model trained on "
                    f"{study.dataset} data, summed over the photos (recall: faces found / {faces}; precision: "
                    "matched detections / detections):\n\n- " + "\n- ".join(lines)
                    + "\n\nThe reference is a detector's output, not annotations, and a few faces move these rates "
                      "by many points. A synthetic AP measures how well a model learned the synthetic faces; only "
                      "these counts speak of real faces.")


def _percent(value: float) -> str:
    return "n/a (no detection)" if value != value else f"{value:.0f} %"
