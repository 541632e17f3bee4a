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
    """Every WIDER FACE-trained detector of the shared folder (RetinaFace-MobileNet-0.25, the released
    FeatherFace V1, the fork's ECA-CBAM: `reference_runs`) on a real photo, one panel each.

    This artifact uses real data and real trained weights whatever the profile, and says so."""
    from ffcore.checkpoint import file_sha256
    from ffcore.eval.detect import detect_faces
    from ffcore.paths import shared_dir
    from ffcore.report.plotting import new_figure, pretty_name
    from ffcore.preprocess import read_image
    from ffcore.report.provenance import REAL_PHOTOS, Provenance, write_figure
    from ffcore.runs.plan import REFERENCE_RUNS
    from ffcore.runs.plan import reference_runs

    detectors = reference_runs()
    image_path = shared_dir() / "images" / image_name
    if not detectors or not image_path.is_file():
        fig, ax = new_figure(aspect=0.2)
        ax.axis("off")
        wanted = ", ".join(str(shared_dir().joinpath(*weights)) for _, weights in REFERENCE_RUNS.values())
        ax.text(0.5, 0.5, f"not available: needs {image_path} and one of {wanted}", ha="center", va="center",
                wrap=True)
        return fig
    image = read_image(image_path)
    fig, axes = new_figure(nrows=len(detectors), aspect=len(detectors) * image.shape[0] / image.shape[1])
    axes = list(np.atleast_1d(axes).ravel())
    counts, weights = {}, {}
    for ax, run in zip(axes, detectors):
        detections = detect_faces(load_run_model(study, run), image, threshold=DETECTION_THRESHOLD,
                                  device=study.device)
        counts[run] = len(detections)
        path = shared_dir().joinpath(*REFERENCE_RUNS[run][1])
        weights[path.name] = file_sha256(path)
        draw_detections(ax, image, detections, None, f"{pretty_name(run)}: {len(detections)} faces with score ≥ "
                                                     f"{DETECTION_THRESHOLD} on {image_name}")
    # Real photo and real weights: provenance says real photos, not the profile's synthetic data.
    provenance = Provenance(profile=study.profile.name, dataset=REAL_PHOTOS, checkpoints=weights,
                            notes={"image": image_name, "threshold": DETECTION_THRESHOLD,
                                   "weights": "the shared detectors trained on WIDER FACE: " + ", ".join(detectors)})
    write_figure(fig, study.figures_dir, name, provenance,
                 headline="WIDER FACE weights on " + image_name + ": "
                          + ", ".join(f"{REFERENCE_RUNS[run][0]} {count} faces" for run, count in counts.items()))
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


def consensus_faces(face_sets: list, min_votes: int):
    """The faces at least `min_votes` of several detectors find: every detection (all detectors, best
    score first) joins the group whose first box it overlaps most at IoU >= 0.5 and that has no box of
    its detector yet, else starts a group; a group with `min_votes` detectors is one consensus face,
    drawn as its best-scoring box."""
    import torch

    from ffcore.boxes import iou_matrix
    from ffcore.postprocess import Detections

    pooled = [(float(score), voter, box, landmarks) for voter, faces in enumerate(face_sets)
              for box, score, landmarks in zip(faces.boxes, faces.scores, faces.landmarks)]
    pooled.sort(key=lambda item: -item[0])
    groups: list[dict] = []
    for score, voter, box, landmarks in pooled:
        open_groups = [g for g in groups if voter not in g["voters"]]
        if open_groups:
            iou = iou_matrix(box[None], torch.stack([g["box"] for g in open_groups]))[0]
            best = int(iou.argmax())
            if float(iou[best]) >= REAL_PHOTO_IOU:
                open_groups[best]["voters"].add(voter)
                continue
        groups.append({"box": box, "score": score, "landmarks": landmarks, "voters": {voter}})
    agreed = [g for g in groups if len(g["voters"]) >= min_votes]
    if not agreed:
        return Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 10))
    return Detections(torch.stack([g["box"] for g in agreed]), torch.tensor([g["score"] for g in agreed]),
                      torch.stack([g["landmarks"] for g in agreed]))


def consensus_name(voters: list[str], min_votes: int) -> str:
    """The label of a consensus reference: `consensus (2 of retinaface_mnet025_widerface, ...)`."""
    return f"consensus ({min_votes} of {', '.join(voters)})"


def _photo_row(run: str, trained: str, image: str, everything, found, reference: str, faces) -> dict:
    matched = _greedy_matches(found, faces)
    return {"run": run, "trained on": trained, "image": image, "reference": reference,
            "reference faces": len(faces), f"detections >= {DETECTION_THRESHOLD}": len(found),
            "matched": matched,
            "recall %": round(100 * matched / len(faces), 1) if len(faces) else float("nan"),
            "precision %": round(100 * matched / len(found), 1) if len(found) else float("nan"),
            "best score": round(float(everything.scores.max()), 3) if len(everything) else 0.0}


def real_photo_check(study: Study, runs: list[str] | None = None, name: str = "real_photo_check") -> pd.DataFrame:
    """What a synthetic AP says about real faces: on each real photo of the shared folder, each run's
    detections at score >= 0.5 against the faces the WIDER FACE-trained detectors find at >= 0.5
    (recall: reference faces found; precision: detections that are reference faces; IoU >= 0.5), each
    detector alone and their consensus (the faces a majority of them find, `consensus_faces`).

    The WIDER FACE-trained detectors themselves are measured the same way, each against each of the
    others and against the consensus of the others: how far real detectors agree is the scale the
    other rows are read on. The references are detectors, not ground truth: the table measures
    agreement with them.
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
    reference_models = {ref: load_run_model(study, ref) for ref in references}
    reference_all = {(ref, image): detect(reference_models[ref], pixels)
                     for ref in references for image, pixels in images.items()}
    reference_faces = {key: found.above(DETECTION_THRESHOLD) for key, found in reference_all.items()}

    def consensus(voters: list[str], image: str):
        votes = len(voters) // 2 + 1          # a majority of the voters
        return consensus_name(voters, votes), consensus_faces([reference_faces[(v, image)] for v in voters], votes)

    rows = []
    for run in runs:
        model = load_run_model(study, run)
        for image, pixels in images.items():
            everything = detect(model, pixels)
            found = everything.above(DETECTION_THRESHOLD)
            trained = trained_on(study.profile, study.dataset, run)
            for ref in references:
                rows.append(_photo_row(run, trained, image, everything, found, ref, reference_faces[(ref, image)]))
            if len(references) > 1:
                rows.append(_photo_row(run, trained, image, everything, found, *consensus(references, image)))
    for run in references if len(references) > 1 else ():
        others = [ref for ref in references if ref != run]
        for image in images:
            everything, found = reference_all[(run, image)], reference_faces[(run, image)]
            trained = trained_on(study.profile, study.dataset, run)
            for ref in others:
                rows.append(_photo_row(run, trained, image, everything, found, ref, reference_faces[(ref, image)]))
            if len(others) > 1:
                rows.append(_photo_row(run, trained, image, everything, found, *consensus(others, image)))
    table = pd.DataFrame(rows)
    checkpoints = {**{r: study.used_checkpoints.get(r, "") for r in runs},
                   **{r: study.used_checkpoints.get(r, "") for r in references}}
    # real photos: the numbers are about real data whatever the profile's training data was
    from ffcore.report.provenance import REAL_PHOTOS, Provenance, write_table
    from ffcore.report.display import CAPTION

    provenance = Provenance(profile=study.profile.name, dataset=REAL_PHOTOS, checkpoints=checkpoints,
                            notes={"images": sorted(images), "threshold": DETECTION_THRESHOLD, "test_scale": scale,
                                   "models trained on": study.dataset,
                                   "reference": "detections of the WIDER FACE-trained detectors, not annotations",
                                   "consensus": "faces a majority of the WIDER FACE-trained detectors find "
                                                f"(IoU >= {REAL_PHOTO_IOU}); for one of them, a majority of the others"})
    main = table[(table["reference"] == references[0]) & table["run"].isin(runs)]
    caption = (f"Real photos: detections >= {DETECTION_THRESHOLD} against the faces the WIDER FACE-trained "
               f"detectors find, each alone and their consensus (IoU >= {REAL_PHOTO_IOU}); the WIDER FACE-trained "
               f"detectors against each other")
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
    if synthetic.empty:     # no model of the study trained yet: only the real detectors' agreement
        return markdown("**What this shows.** No model of the study was measured." + _real_detectors_agreement(table))
    reference = synthetic["reference"].iloc[0]
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
                    + _real_detectors_agreement(table)
                    + "\n\nThe reference is a detector's output, not annotations, and a few faces move these rates "
                      "by many points. A synthetic AP measures how well a model learned the synthetic faces; only "
                      "these counts speak of real faces.")


def _real_detectors_agreement(table: pd.DataFrame) -> str:
    """The sentence on how far the WIDER FACE-trained detectors agree with the consensus of the others
    (empty when the table has no such rows)."""
    real = table[table["trained on"].str.contains("WIDER") & table["reference"].str.startswith("consensus")]
    if real.empty:
        return ""
    per_run = real.groupby("run", sort=False)[["matched", "reference faces", f"detections >= {DETECTION_THRESHOLD}"]].sum()
    parts = [f"{run} recall {100 * row['matched'] / row['reference faces']:.0f} % "
             f"({int(row['matched'])}/{int(row['reference faces'])}), precision "
             f"{_percent(100 * row['matched'] / row[f'detections >= {DETECTION_THRESHOLD}'] if row[f'detections >= {DETECTION_THRESHOLD}'] else float('nan'))}"
             for run, row in per_run.iterrows()]
    return ("\n\nThe WIDER FACE-trained detectors against the consensus of the others (the faces a majority of the "
            "others find), summed over the photos: " + "; ".join(parts) + ". That is how far real detectors agree.")


def _percent(value: float) -> str:
    return "n/a (no detection)" if value != value else f"{value:.0f} %"
