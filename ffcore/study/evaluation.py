"""AP tables, precision–recall curves and detection pictures of a study's runs.

APs follow the official WIDER FACE protocol (`ffcore.eval`) on the profile's validation
set. Each run's result is cached in results/<profile>/cache/eval_<run>.json keyed by the
checkpoint hash and test settings, so later notebooks reuse it instead of re-predicting.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ffcore.study.context import Study
from ffcore.study.training import ensure_checkpoint, model_of_run

SETTINGS = ("easy", "medium", "hard")
DETECTION_THRESHOLD = 0.5
MAX_DRAWN = 60


def load_run_model(study: Study, run: str):
    """The run's trained model (best.pt) in eval mode on the study's device; trains it first if missing."""
    from ffcore.models import load_pretrained

    checkpoint = ensure_checkpoint(study, run)
    return load_pretrained(model_of_run(study, run), checkpoint).to(study.device).eval()


def _cache_key(study: Study, run: str) -> dict:
    return {"checkpoint": study.used_checkpoints[run], "scale": str(study.profile.eval_scale),
            "limit": study.profile.eval_limit, "data_root": str(study.data_root)}


def evaluate_run(study: Study, run: str):
    """The `ffcore.eval.EvalResult` of a run on the profile's validation set (cached by checkpoint hash)."""
    import pickle

    import torch

    from ffcore.eval.predict import evaluate_model

    checkpoint = ensure_checkpoint(study, run)
    cache = study.cache_dir / f"eval_{run}.pkl"
    key = _cache_key(study, run)
    if cache.is_file():
        try:
            stored = pickle.loads(cache.read_bytes())
        except Exception:   # a cache from an older version of the code: recompute
            stored = {}
        if stored.get("key") == key:
            return stored["result"]
    model = load_run_model(study, run)
    with torch.inference_mode():
        result = evaluate_model(model, study.data_root, scale=study.profile.eval_scale, device=study.device,
                                limit=study.profile.eval_limit, out_dir=study.predictions_dir / run,
                                progress=False, checkpoint=checkpoint)
    study.cache_dir.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps({"key": key, "result": result}))
    return result


def ap_frame(study: Study, runs: list[str]) -> pd.DataFrame:
    """AP (%) per run and setting, with parameter counts (no artifact written)."""
    from ffcore.study.architecture import model_summary

    rows = []
    for run in runs:
        result = evaluate_run(study, run)
        summary = model_summary(model_of_run(study, run), study.profile.flops_size)
        rows.append({"run": run, "parameters": summary["parameters"],
                     **{f"AP {s} %": round(100 * float(result.ap[s]), 2) for s in SETTINGS},
                     "val images": result.num_images, "checkpoint": study.used_checkpoints[run]})
    return pd.DataFrame(rows)


def evaluate_runs(study: Study, runs: list[str], name: str = "ap") -> pd.DataFrame:
    """WIDER FACE-protocol AP (easy / medium / hard) of trained runs on the profile's validation set."""
    table = ap_frame(study, runs)
    scale = study.profile.eval_scale
    study.save_table(table, name, checkpoints=runs, test_scale=str(scale),
                     caption=f"AP on the validation set (WIDER FACE protocol, test scale {scale})",
                     headline="; ".join(f"{r.run}: {r._3:.1f}/{r._4:.1f}/{r._5:.1f} (E/M/H AP %)"
                                        for r in table.itertuples()))
    return table


def pr_curves_figure(study: Study, runs: list[str], name: str = "pr_curves"):
    """Precision–recall curves (ffcore.eval.plots), one panel per setting, one line per run."""
    from ffcore.eval.plots import pr_curves_figure as draw_pr_curves
    from ffcore.plotting import pretty_name, show

    results = [evaluate_run(study, run) for run in runs]
    fig = draw_pr_curves(results, labels=[pretty_name(run) for run in runs],
                         title=f"WIDER FACE protocol, test scale {study.profile.eval_scale}")
    study.save_figure(fig, name, checkpoints=runs, test_scale=str(study.profile.eval_scale),
                      headline="; ".join(f"{r}: hard AP {100 * float(res.ap['hard']):.1f}%"
                                         for r, res in zip(runs, results)))
    return show(fig)


def ap_bars_figure(study: Study, runs: list[str], name: str = "ap_bars"):
    """Grouped bars of AP per setting for several runs."""
    from ffcore.plotting import model_style, new_figure, pretty_name

    table = ap_frame(study, runs)
    fig, ax = new_figure(aspect=0.45)
    width = 0.8 / len(runs)
    for index, row in enumerate(table.itertuples()):
        values = [getattr(row, f"_{3 + k}") for k in range(3)]
        positions = np.arange(3) + (index - (len(runs) - 1) / 2) * width
        bars = ax.bar(positions, values, width, color=model_style(row.run, index)["color"],
                      label=f"{pretty_name(row.run)} ({row.parameters:,} params)")
        ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)
    ax.set_xticks(range(3))
    ax.set_xticklabels(SETTINGS)
    ax.set_ylabel("AP (%)")
    ax.legend(fontsize=7)
    return study.save_figure(fig, name, checkpoints=runs,
                             headline="; ".join(f"{r.run}: hard {r._5:.1f}%" for r in table.itertuples()))


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

    path, ground_truth = _validation_sample(study)
    image = read_image(path)
    model = load_run_model(study, run)
    detections = detect_faces(model, image, threshold=DETECTION_THRESHOLD, device=study.device)
    fig, ax = new_figure(aspect=image.shape[0] / image.shape[1])
    _draw(ax, image, detections, ground_truth,
          f"{pretty_name(run)}: {len(detections)} detections >= {DETECTION_THRESHOLD} (top {MAX_DRAWN} drawn) "
          f"({len(ground_truth)} faces, dashed) — {path.parent.name}/{path.name}")
    return study.save_figure(fig, name or f"detections_{run}", checkpoints=[run], image=path.name,
                             headline=f"{run}: {len(detections)} detections vs {len(ground_truth)} faces on {path.name}")


def real_photo_detections_figure(study: Study, image_name: str = "crowd.jpg", name: str = "real_photo_detections"):
    """RetinaFace-MobileNet-0.25 trained on WIDER FACE (shared weights) on a real photo of the shared folder.

    This artifact uses real data and real trained weights whatever the profile, and says so."""
    from ffcore.checkpoint import file_sha256
    from ffcore.eval.detect import DEFAULT_WEIGHTS, detect_faces, load_detector
    from ffcore.paths import shared_dir
    from ffcore.plotting import new_figure
    from ffcore.preprocess import read_image
    from ffcore.provenance import WIDERFACE, Provenance, write_figure

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
    _draw(ax, image, detections, None, f"RetinaFace-MobileNet-0.25 (trained on WIDER FACE): "
                                       f"{len(detections)} faces >= {DETECTION_THRESHOLD} on {image_name}")
    # Real photo and real weights: provenance says WIDER FACE-trained, not the profile's synthetic data.
    provenance = Provenance(profile=study.profile.name, dataset=WIDERFACE,
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
