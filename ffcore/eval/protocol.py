"""The official WIDER FACE validation protocol (MATLAB `eval_tools`), vectorised.

Step numbers refer to `reference/WIDERFACE_EVAL.md`. Two observations make the
protocol vectorisable without changing a single count:

* The matching (step 5) does not depend on the setting: each prediction's best face is
  taken over *all* faces and there is no fallback, so a face is matched by the first
  prediction (in descending-score order) whose best face it is with IoU >= 0.5. Only
  whether that face is kept or ignored depends on the setting.
* Within an image the boxes are sorted by score, so "every prediction up to the last one
  with score >= thr" (step 6) is exactly "every prediction with score >= thr". Summed over
  images, proposals[t] and tp[t] are therefore counts of scores >= thr over the whole
  dataset, which one sort and one `searchsorted` give for all 1000 thresholds at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ffcore.data.ground_truth import SETTINGS, GroundTruth
from ffcore.eval.predictions import Predictions

IOU_THRESHOLD = 0.5
THRESHOLD_COUNT = 1000


def score_thresholds(count: int = THRESHOLD_COUNT) -> np.ndarray:
    """thr[t] = 1 - (t + 1) / count, t = 0 .. count - 1 (same float operations as the toolbox)."""
    return 1 - np.arange(1, count + 1) / count


@dataclass(frozen=True)
class SettingResult:
    """AP and curves of one setting. Curves are indexed by threshold (descending scores)."""

    setting: str
    ap: float
    precision: np.ndarray        # [T] tp / proposals (NaN where there is no proposal)
    recall: np.ndarray           # [T] tp / num_faces
    thresholds: np.ndarray       # [T] normalised-score thresholds
    proposals: np.ndarray        # [T] predictions with score >= thr that are not on an ignored face
    true_positives: np.ndarray   # [T]
    num_faces: int               # faces counted in this setting


@dataclass(frozen=True)
class PredictionMatches:
    """What the protocol decided for every prediction, kept so AP can be recomputed on any
    reweighting of the images (bootstrap intervals, `ffcore.eval.bootstrap`).

    For a setting, proposals[t] and true_positives[t] of `SettingResult` are the counts of
    `counted` and `true_positive` predictions with score >= thr[t], summed over images; the
    face count is the sum of `faces_per_image`.
    """

    image: np.ndarray                        # [M] image index of each prediction
    score: np.ndarray                        # [M] normalised score (the dataset-wide min-max of step 2)
    counted: dict[str, np.ndarray]           # setting -> [M] bool: a proposal (not on an ignored face, image has faces)
    true_positive: dict[str, np.ndarray]     # setting -> [M] bool: first match of a face kept in the setting
    faces_per_image: dict[str, np.ndarray]   # setting -> [N] faces counted in the setting per image
    num_images: int


@dataclass(frozen=True)
class EvalResult:
    """Per-setting results plus what the evaluator saw (for reports and face-size analyses)."""

    settings: dict[str, SettingResult]
    num_images: int
    num_predictions: int
    missing_files: tuple[str, ...] = ()
    empty_files: tuple[str, ...] = ()
    extra_files: tuple[str, ...] = ()
    # Normalised score of the first prediction matching each ground-truth face (NaN if none),
    # aligned with GroundTruth.boxes: recall of any face subset at any threshold follows from it.
    face_match_score: np.ndarray = field(default_factory=lambda: np.zeros(0))
    score_range: tuple[float, float] | None = None   # raw (min, max) used for normalisation
    label: str = ""
    matches: PredictionMatches | None = None          # per-prediction decisions (bootstrap over images)

    def __getitem__(self, setting: str) -> SettingResult:
        return self.settings[setting]

    @property
    def ap(self) -> dict[str, float]:
        return {name: result.ap for name, result in self.settings.items()}

    def to_dict(self) -> dict:
        """The APs as fractions, {"easy": ..., "medium": ..., "hard": ...}."""
        return {name: float(result.ap) for name, result in self.settings.items()}

    def summary(self) -> str:
        """A small text table (AP in percent)."""
        names = list(self.settings)
        header = f"{'':<12}" + "".join(f"{n:>10}" for n in names)
        row = f"{'AP (%)':<12}" + "".join(f"{100 * self.settings[n].ap:>10.2f}" for n in names)
        faces = f"{'faces':<12}" + "".join(f"{self.settings[n].num_faces:>10d}" for n in names)
        lines = [header, row, faces,
                 f"{self.num_images} images, {self.num_predictions} predictions"]
        if self.missing_files:
            lines.append(f"{len(self.missing_files)} prediction file(s) missing (counted as no detections), "
                         f"first: {self.missing_files[0]}")
        if self.empty_files:
            lines.append(f"{len(self.empty_files)} empty prediction file(s), first: {self.empty_files[0]}")
        if self.extra_files:
            lines.append(f"{len(self.extra_files)} prediction file(s) for images the ground truth does not list "
                         f"(not evaluated), first: {self.extra_files[0]}")
        return "\n".join(lines)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point AP (step 8). NaN precisions (no proposal) are skipped by the running
    maximum as MATLAB's `max` does; they only occur where recall is 0."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]
    changes = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[changes + 1] - mrec[changes]) * mpre[changes + 1]))


def iou_plus_one(pred_xywh: np.ndarray, gt_xywh: np.ndarray) -> np.ndarray:
    """Element-wise IoU of paired boxes (x, y, w, h) with the "+1 pixel" convention.

    Corners x2 = x + w, y2 = y + h; the operations and their order are those of the
    toolbox's `bbox_overlaps`, so values agree bit for bit; pairs without overlap are 0.
    """
    px1, py1 = pred_xywh[..., 0], pred_xywh[..., 1]
    px2, py2 = px1 + pred_xywh[..., 2], py1 + pred_xywh[..., 3]
    gx1, gy1 = gt_xywh[..., 0], gt_xywh[..., 1]
    gx2, gy2 = gx1 + gt_xywh[..., 2], gy1 + gt_xywh[..., 3]
    iw = np.minimum(px2, gx2) - np.maximum(px1, gx1) + 1
    ih = np.minimum(py2, gy2) - np.maximum(py1, gy1) + 1
    overlap = (iw > 0) & (ih > 0)
    inter = iw * ih
    union = (px2 - px1 + 1) * (py2 - py1 + 1) + (gx2 - gx1 + 1) * (gy2 - gy1 + 1) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overlap, inter / union, 0.0)


def best_face_per_prediction(pred_xywh: np.ndarray, pred_image: np.ndarray,
                             ground_truth: GroundTruth) -> np.ndarray:
    """Global index of each prediction's best face when its IoU is >= 0.5, else -1 (step 5).

    The best face is the highest IoU over all faces of the image, lowest index on ties.
    Only faces whose x-range can overlap the box are looked at: every face left out has
    IoU 0, which can never be a best face with IoU >= 0.5. Faces are sorted by (image, x1),
    so each box's candidates are one contiguous run found with `searchsorted`.
    """
    n_pred = pred_xywh.shape[0]
    best = np.full(n_pred, -1, dtype=np.int64)
    gt_boxes = ground_truth.boxes
    if n_pred == 0 or gt_boxes.shape[0] == 0:
        return best
    gt_counts = np.diff(ground_truth.offsets)
    gt_image = np.repeat(np.arange(ground_truth.num_images), gt_counts)
    x_min = float(gt_boxes[:, 0].min())
    x_span = float((gt_boxes[:, 0] + gt_boxes[:, 2]).max()) - x_min
    stride = x_span + 16.0                          # one band of keys per image, bands never overlap
    gt_keys = gt_image * stride + (gt_boxes[:, 0] - x_min)
    order = np.argsort(gt_keys, kind="stable")
    sorted_keys = gt_keys[order]

    widest = np.zeros(ground_truth.num_images)
    has_faces = gt_counts > 0
    widest[has_faces] = np.maximum.reduceat(gt_boxes[:, 2], ground_truth.offsets[:-1][has_faces])
    # Overlap in x needs x1_face > x1_box - 1 - w_face and x1_face < x2_box + 1; 2 px of slack
    # absorbs the rounding of the keys. Clipping keeps each query inside its image's band.
    band = pred_image * stride
    low = band + np.clip(pred_xywh[:, 0] - widest[pred_image] - 2 - x_min, -1, stride - 2)
    high = band + np.clip(pred_xywh[:, 0] + pred_xywh[:, 2] + 2 - x_min, -1, stride - 2)
    first = np.searchsorted(sorted_keys, low, side="left")
    last = np.searchsorted(sorted_keys, high, side="right")
    run = np.maximum(last - first, 0)
    pair_pred = np.repeat(np.arange(n_pred), run)
    within = np.arange(pair_pred.size) - np.repeat(np.cumsum(run) - run, run)
    pair_face = order[np.repeat(first, run) + within]

    iou = iou_plus_one(pred_xywh[pair_pred], gt_boxes[pair_face])
    good = iou >= IOU_THRESHOLD
    pair_pred, pair_face, iou = pair_pred[good], pair_face[good], iou[good]
    # per prediction: highest IoU first, then lowest face index
    ranked = np.lexsort((pair_face, -iou, pair_pred))
    winners, first_of_pred = np.unique(pair_pred[ranked], return_index=True)
    best[winners] = pair_face[ranked[first_of_pred]]
    return best


def _as_predictions(predictions, ground_truth: GroundTruth) -> Predictions:
    if isinstance(predictions, Predictions):
        if len(predictions.per_image) != ground_truth.num_images:
            raise ValueError(f"predictions cover {len(predictions.per_image)} images, the ground truth "
                             f"{ground_truth.num_images}; read them with read_predictions(dir, ground_truth)")
        return predictions
    if isinstance(predictions, Mapping):
        return Predictions.from_mapping(predictions, ground_truth)
    raise TypeError("predictions must be a Predictions (read_predictions) or a mapping "
                    "{(event, image name): [k, 5] x, y, w, h, score}")


def _count_at_or_above(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    ordered = np.sort(scores)
    return (ordered.size - np.searchsorted(ordered, thresholds, side="left")).astype(np.int64)


def evaluate(predictions: Predictions | Mapping[tuple[str, str], np.ndarray], ground_truth: GroundTruth,
             settings: tuple[str, ...] = SETTINGS, label: str = "") -> EvalResult:
    """AP and precision/recall curves of each setting, by the official protocol. Pure: no I/O.

    `predictions`: from `read_predictions`, or a mapping {(event, image name): [k, 5]
    x, y, w, h, score} (images absent from it have no detections).
    """
    predictions = _as_predictions(predictions, ground_truth)
    for setting in settings:
        if setting not in ground_truth.kept:
            raise KeyError(f"setting '{setting}' not loaded in the ground truth (have {ground_truth.settings})")
    thresholds = score_thresholds()

    # Step 1 (stable descending sort; a no-op on what read_predictions returns).
    per_image = [p if p.shape[0] < 2 or np.all(p[:-1, 4] >= p[1:, 4]) else
                 p[np.argsort(-p[:, 4], kind="stable")] for p in predictions.per_image]
    counts = np.array([p.shape[0] for p in per_image], dtype=np.int64)
    all_preds = np.concatenate(per_image) if counts.sum() else np.zeros((0, 5))

    # Step 2: one min-max over every prediction of the dataset.
    raw = all_preds[:, 4]
    score_range = None
    if raw.size:
        low, high = float(raw.min()), float(raw.max())
        score_range = (low, high)
        # max == min is undefined in the toolbox (0/0); every box then passes every threshold.
        scores = (raw - low) / (high - low) if high > low else np.ones_like(raw)
    else:
        scores = raw

    # Steps 3-5, setting-independent part: each prediction's best face over all faces.
    # (Images without faces have no candidates, so their boxes never hit; step 3's skip.)
    pred_image = np.repeat(np.arange(ground_truth.num_images), counts)
    best_face = best_face_per_prediction(all_preds[:, :4], pred_image, ground_truth)
    on_image_with_faces = np.repeat(np.diff(ground_truth.offsets) > 0, counts)

    # The first prediction to hit a face (in image order, i.e. descending score) is the one
    # that matches it; later hits on the same face stay false positives (no fallback).
    hits = np.nonzero(best_face >= 0)[0]
    first_hit = np.zeros(raw.size, dtype=bool)
    face_match_score = np.full(ground_truth.num_faces, np.nan)
    if hits.size:
        faces, first = np.unique(best_face[hits], return_index=True)
        first_hit[hits[first]] = True
        face_match_score[faces] = scores[hits[first]]

    results = {}
    counted_by_setting, true_positive_by_setting, faces_by_setting = {}, {}, {}
    face_image = np.repeat(np.arange(ground_truth.num_images), np.diff(ground_truth.offsets))
    for setting in settings:
        kept = ground_truth.kept[setting]
        num_faces = int(kept.sum())
        hit_kept = np.zeros(raw.size, dtype=bool)
        hit_kept[hits] = kept[best_face[hits]]
        on_ignored = (best_face >= 0) & ~hit_kept          # marked -1: neither TP nor FP
        counted = on_image_with_faces & ~on_ignored
        true_positive = first_hit & hit_kept
        counted_by_setting[setting], true_positive_by_setting[setting] = counted, true_positive
        faces_by_setting[setting] = np.bincount(face_image[kept], minlength=ground_truth.num_images)
        proposals = _count_at_or_above(scores[counted], thresholds)
        true_positives = _count_at_or_above(scores[true_positive], thresholds)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = true_positives / proposals
            recall = true_positives / num_faces
        results[setting] = SettingResult(setting=setting, ap=voc_ap(recall, precision), precision=precision,
                                         recall=recall, thresholds=thresholds, proposals=proposals,
                                         true_positives=true_positives, num_faces=num_faces)
    return EvalResult(settings=results, num_images=ground_truth.num_images, num_predictions=int(raw.size),
                      missing_files=tuple(predictions.missing), empty_files=tuple(predictions.empty_files),
                      extra_files=tuple(predictions.extra_files),
                      face_match_score=face_match_score, score_range=score_range, label=label,
                      matches=PredictionMatches(image=pred_image, score=np.asarray(scores, dtype=np.float64),
                                                counted=counted_by_setting, true_positive=true_positive_by_setting,
                                                faces_per_image=faces_by_setting,
                                                num_images=ground_truth.num_images))


def recall_by_face_size(result: EvalResult, ground_truth: GroundTruth, setting: str = "hard",
                        bins: tuple[float, ...] = (0, 10, 20, 32, 64, 128, 256, np.inf),
                        score_threshold: float = 0.0) -> dict[str, np.ndarray]:
    """Recall of the setting's counted faces per face-size bin (size = sqrt(w * h) in pixels).

    A face counts as found when a prediction with normalised score >= `score_threshold`
    matched it under the protocol; summed over bins this is the protocol's recall.
    """
    kept = ground_truth.kept[setting]
    boxes = ground_truth.boxes
    size = np.sqrt(np.clip(boxes[:, 2], 0, None) * np.clip(boxes[:, 3], 0, None))
    found = np.nan_to_num(result.face_match_score, nan=-np.inf) >= score_threshold
    edges = np.asarray(bins, dtype=np.float64)
    which = np.digitize(size, edges[1:-1])
    faces = np.bincount(which[kept], minlength=len(edges) - 1)
    found_faces = np.bincount(which[kept & found], minlength=len(edges) - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = found_faces / faces
    return {"edges": edges, "faces": faces, "found": found_faces, "recall": recall}
