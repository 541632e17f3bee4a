"""Detection pictures and the real-photo check: a run's detections drawn on validation images
and on the shared real photos, the dataset preview, and the count of real faces each run finds
on those photos (matched greedily at IoU 0.5 against the reference detector's boxes)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ffcore.report.tables import markdown, read_table
from ffcore.runs.context import Study
from ffcore.study.evaluation import load_run_model, run_label

DETECTION_THRESHOLD = 0.5
MAX_DRAWN = 60


def draw_detections(ax, image_bgr, detections, ground_truth_xyxy=None, title: str = "") -> None:
    import matplotlib.patches as patches

    from ffcore.report.plotting import PALETTE

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
    from ffcore.report.plotting import new_figure
    from ffcore.preprocess import read_image
    from ffcore.runs.plan import split_seed

    path, ground_truth = _validation_sample(study)
    image = read_image(path)
    model = load_run_model(study, run)
    detections = detect_faces(model, image, threshold=DETECTION_THRESHOLD, device=study.device)
    fig, ax = new_figure(aspect=image.shape[0] / image.shape[1])
    draw_detections(ax, image, detections, ground_truth,
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
    from ffcore.report.plotting import new_figure, pretty_name
    from ffcore.preprocess import read_image
    from ffcore.report.provenance import REAL_PHOTOS, Provenance, write_figure

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
    draw_detections(ax, image, detections, None, f"{pretty_name('retinaface_mnet025_widerface')}: "
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
    from ffcore.runs.plan import is_own_recipe, is_unpruned_finetune, run_epochs
    from ffcore.runs.plan import planned_runs, reference_runs, trained_on

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
    from ffcore.report.provenance import REAL_PHOTOS, Provenance, write_table
    from ffcore.report.display import CAPTION

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
    from ffcore.runs.plan import split_seed

    table = read_table(study, name)
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
