"""MultiBoxLoss: prior matching, hard-negative mining, box / class / landmark terms.

The loss of RetinaFace and FeatherFace (see ARCHITECTURES.md, "MultiBoxLoss"):

1. every ground truth is compared with every prior (IoU, priors in point form);
2. the best prior of each ground truth whose best IoU is at least `force_match_threshold`
   is forced onto that ground truth (later ground truths win a shared prior);
3. every other prior takes its best ground truth, and is background below
   `overlap_threshold`;
4. smooth-L1 (sum) on encoded boxes of the positives (label != 0) and on encoded
   landmarks of the landmark positives (label > 0);
5. cross-entropy on the positives and on the `neg_pos_ratio` hardest negatives per
   positive of the same image (at most P - 1);
6. box and class terms are divided by the number of positives of the batch, the
   landmark term by the number of landmark positives (each at least 1).

Optional per-face weights (`target_weights`, one tensor [n_i] per image) carry MixUp's
label mixing, y = lam * y_A + (1 - lam) * y_B (003_v2_technical_report.md, 3.2): a face
of image A weighs lam, a face of B weighs 1 - lam. A prior matched to a face of weight w
then has the soft class target w * face + (1 - w) * background (its cross-entropy is
w * CE(face) + (1 - w) * CE(background)), and its box and landmark terms are multiplied
by w; background priors keep weight 1 (they are background in both images). Matching,
mining and the normalisers are those of the unweighted loss, so weights of 1 give exactly
the reference loss.

Matching is vectorised over the whole batch: the ground truths of all images are
concatenated, so memory grows with the total number of faces, never with
(batch x largest face count x priors) as padding would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ffcore.anchors import DEFAULT_PRIORS
from ffcore.boxes import box_iou, encode, encode_landmarks, point_form


@dataclass(frozen=True)
class MultiBoxLossConfig:
    overlap_threshold: float = 0.35      # a prior is a positive at or above this IoU
    force_match_threshold: float = 0.2   # a ground truth's best prior is forced only above this IoU
    neg_pos_ratio: int = 7               # hard negatives kept per positive
    variance: tuple[float, float] = DEFAULT_PRIORS.variance
    loc_weight: float = 2.0              # weight of the box term in `total`


@dataclass
class MatchResult:
    """Per-prior matching of a batch.

    labels: [B, P] long, 0 background, else the matched face's label (1, or -1 when the
    face has no landmarks); gt_index: [B, P] index into the concatenated ground truths
    (meaningful where labels != 0).
    """

    labels: torch.Tensor
    gt_index: torch.Tensor
    boxes: torch.Tensor       # [G, 4] concatenated ground-truth boxes of the batch
    landmarks: torch.Tensor   # [G, 10]


def _concatenate_targets(targets: Sequence[torch.Tensor], device, dtype):
    rows = [t.to(device=device, dtype=dtype).reshape(-1, 15) for t in targets]
    counts = torch.tensor([r.shape[0] for r in rows], device=device, dtype=torch.long)
    image_of_gt = torch.repeat_interleave(torch.arange(len(rows), device=device), counts)
    flat = torch.cat(rows, dim=0) if rows else torch.zeros(0, 15, device=device, dtype=dtype)
    return flat, image_of_gt


@torch.no_grad()
def match_priors(priors: torch.Tensor, targets: Sequence[torch.Tensor],
                 config: MultiBoxLossConfig = MultiBoxLossConfig()) -> MatchResult:
    """Assign every prior of every image to a ground truth or to background (no Python loop over priors)."""
    batch, num_priors = len(targets), priors.shape[0]
    device = priors.device
    flat, image_of_gt = _concatenate_targets(targets, device, priors.dtype)
    num_gt = flat.shape[0]
    gt_boxes, gt_landmarks, gt_labels = flat[:, :4], flat[:, 4:14], flat[:, 14].round().long()

    labels = torch.zeros(batch, num_priors, dtype=torch.long, device=device)
    gt_index = torch.zeros(batch, num_priors, dtype=torch.long, device=device)
    if num_gt == 0:
        return MatchResult(labels, gt_index, gt_boxes, gt_landmarks)

    overlaps = box_iou(gt_boxes, point_form(priors))                      # [G, P]
    best_prior_overlap, best_prior = overlaps.max(dim=1)                  # per ground truth
    forced = best_prior_overlap >= config.force_match_threshold

    # Best ground truth of each prior within its own image: a segmented max over the
    # rows of that image, then the first row reaching it (argmax tie rule).
    rows_image = image_of_gt[:, None].expand(-1, num_priors)
    best_overlap = overlaps.new_full((batch, num_priors), -1.0).scatter_reduce(
        0, rows_image, overlaps, reduce="amax", include_self=True)
    row_ids = torch.arange(num_gt, device=device)[:, None].expand(-1, num_priors)
    candidate = torch.where(overlaps == best_overlap[image_of_gt], row_ids, torch.full_like(row_ids, num_gt))
    gt_index = torch.full((batch, num_priors), num_gt, dtype=torch.long, device=device).scatter_reduce(
        0, rows_image, candidate, reduce="amin", include_self=True)

    # Forcing: a prior shared by several forced ground truths goes to the last one.
    slot = image_of_gt * num_priors + best_prior
    forced_owner = torch.full((batch * num_priors,), -1, dtype=torch.long, device=device).scatter_reduce(
        0, slot[forced], row_ids[forced, 0], reduce="amax", include_self=True).view(batch, num_priors)
    is_forced = forced_owner >= 0
    gt_index = torch.where(is_forced, forced_owner, gt_index).clamp_(max=num_gt - 1)
    best_overlap = torch.where(is_forced, torch.full_like(best_overlap, 2.0), best_overlap)

    labels = torch.where(best_overlap < config.overlap_threshold, torch.zeros_like(gt_index), gt_labels[gt_index])
    # An image none of whose faces reaches the forcing threshold has no positives at all.
    image_has_forced = torch.zeros(batch, dtype=torch.bool, device=device).index_fill_(0, image_of_gt[forced], True)
    labels = labels * image_has_forced[:, None]
    return MatchResult(labels, gt_index, gt_boxes, gt_landmarks)


def _concatenate_weights(target_weights: Sequence[torch.Tensor], targets: Sequence[torch.Tensor],
                         device, dtype) -> torch.Tensor:
    """Per-face weights in the order of the concatenated ground truths, checked against the targets."""
    if len(target_weights) != len(targets):
        raise ValueError(f"MultiBoxLoss: {len(target_weights)} target weight tensors for {len(targets)} target tensors")
    rows = []
    for image, (weights, faces) in enumerate(zip(target_weights, targets)):
        weights = weights.to(device=device, dtype=dtype).reshape(-1)
        if weights.shape[0] != faces.reshape(-1, 15).shape[0]:
            raise ValueError(f"MultiBoxLoss: image {image} has {faces.reshape(-1, 15).shape[0]} faces but "
                             f"{weights.shape[0]} target weights")
        if weights.numel() and (weights.min() < 0 or weights.max() > 1):
            raise ValueError(f"MultiBoxLoss: target weights of image {image} must lie in [0, 1], "
                             f"got {weights.min().item()} .. {weights.max().item()}")
        rows.append(weights)
    return torch.cat(rows) if rows else torch.zeros(0, device=device, dtype=dtype)


class MultiBoxLoss(nn.Module):
    """`MultiBoxLoss()(predictions=(loc, conf, landm), priors=priors, targets=targets)` -> {"loc", "cls", "landm"}.

    loc [B, P, 4], conf [B, P, 2] logits, landm [B, P, 10]; priors [P, 4] (cx, cy, w, h);
    targets: a list of B tensors [n, 15] (normalised box x1 y1 x2 y2, ten landmark
    coordinates, label); target_weights: None, or a list of B tensors [n] in [0, 1]
    (see the module docstring). Computed in float32 at least (safe under autocast).
    """

    def __init__(self, config: MultiBoxLossConfig = MultiBoxLossConfig()):
        super().__init__()
        self.config = config

    def total(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """loc_weight * loc + cls + landm (2 * box + class + landmark by default)."""
        return self.config.loc_weight * terms["loc"] + terms["cls"] + terms["landm"]

    def forward(self, predictions, priors: torch.Tensor, targets: Sequence[torch.Tensor],
                target_weights: Sequence[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        loc, conf, landm = predictions[:3]
        dtype = torch.promote_types(loc.dtype, torch.float32)
        loc, conf, landm = loc.to(dtype), conf.to(dtype), landm.to(dtype)
        priors = priors.to(device=loc.device, dtype=dtype)
        if len(targets) != loc.shape[0]:
            raise ValueError(f"MultiBoxLoss: {len(targets)} target tensors for a batch of {loc.shape[0]} images")
        if priors.shape[0] != loc.shape[1]:
            raise ValueError(f"MultiBoxLoss: {priors.shape[0]} priors but the predictions have {loc.shape[1]}; "
                             "build the priors for the network input size")
        match = match_priors(priors, targets, self.config)
        variance = self.config.variance
        face_weight = None
        if target_weights is not None:
            face_weight = _concatenate_weights(target_weights, targets, loc.device, dtype)

        positive = match.labels != 0
        landmark_positive = match.labels > 0
        num_positive = positive.sum()
        num_landmark_positive = landmark_positive.sum()

        prior_grid = priors.unsqueeze(0).expand(loc.shape[0], -1, -1)
        if num_positive > 0:
            box_target = encode(match.boxes[match.gt_index[positive]], prior_grid[positive], variance)
            box_error = F.smooth_l1_loss(loc[positive], box_target, reduction="none").sum(dim=1)
            if face_weight is not None:
                box_error = box_error * face_weight[match.gt_index[positive]]
            loss_loc = box_error.sum()
        else:
            loss_loc = loc.sum() * 0.0
        if num_landmark_positive > 0:
            landmark_target = encode_landmarks(match.landmarks[match.gt_index[landmark_positive]],
                                               prior_grid[landmark_positive], variance)
            landmark_error = F.smooth_l1_loss(landm[landmark_positive], landmark_target, reduction="none").sum(dim=1)
            if face_weight is not None:
                landmark_error = landmark_error * face_weight[match.gt_index[landmark_positive]]
            loss_landm = landmark_error.sum()
        else:
            loss_landm = landm.sum() * 0.0

        # Hard-negative mining on the per-prior cross-entropy, positives excluded.
        class_target = positive.long()
        per_prior_ce = torch.logsumexp(conf, dim=-1) - conf.gather(-1, class_target.unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            mining_score = per_prior_ce.detach().masked_fill(positive, 0.0)
            order = mining_score.argsort(dim=1, descending=True)
            rank = order.argsort(dim=1)
            num_negative = (self.config.neg_pos_ratio * positive.sum(dim=1, keepdim=True)).clamp(max=loc.shape[1] - 1)
            negative = rank < num_negative
        selected = positive | negative
        if face_weight is not None and num_positive > 0:
            # Soft target w * face + (1 - w) * background on the positives; negatives keep weight 1.
            background_ce = torch.logsumexp(conf, dim=-1) - conf[..., 0]
            weight = torch.where(positive, face_weight[match.gt_index], torch.ones_like(per_prior_ce))
            per_prior_ce = torch.where(positive, weight * per_prior_ce + (1.0 - weight) * background_ce, per_prior_ce)
        loss_cls = per_prior_ce[selected].sum()

        norm = num_positive.clamp(min=1).to(dtype)
        norm_landmark = num_landmark_positive.clamp(min=1).to(dtype)
        return {"loc": loss_loc / norm, "cls": loss_cls / norm, "landm": loss_landm / norm_landmark}
