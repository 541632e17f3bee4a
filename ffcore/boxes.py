"""Box and landmark coding, IoU and NMS (vectorised; no loops over priors).

Boxes are in point form (x1, y1, x2, y2) unless a name says otherwise; priors are
(cx, cy, w, h). `variance` always comes from a `PriorConfig`.
"""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms, box_iou, nms  # noqa: F401  (re-exported)

from ffcore.anchors import DEFAULT_PRIORS

DEFAULT_VARIANCE = DEFAULT_PRIORS.variance


def point_form(boxes_cxcywh: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) -> (x1, y1, x2, y2)."""
    centre, size = boxes_cxcywh[..., :2], boxes_cxcywh[..., 2:4]
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def center_size(boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """(x1, y1, x2, y2) -> (cx, cy, w, h)."""
    top_left, bottom_right = boxes_xyxy[..., :2], boxes_xyxy[..., 2:4]
    return torch.cat([(top_left + bottom_right) / 2, bottom_right - top_left], dim=-1)


def encode(boxes_xyxy: torch.Tensor, priors: torch.Tensor,
           variance: tuple[float, float] = DEFAULT_VARIANCE) -> torch.Tensor:
    """Encode matched ground-truth boxes [..., 4] against priors [..., 4] into regression targets."""
    centre = (boxes_xyxy[..., :2] + boxes_xyxy[..., 2:4]) / 2
    size = boxes_xyxy[..., 2:4] - boxes_xyxy[..., :2]
    g_centre = (centre - priors[..., :2]) / (variance[0] * priors[..., 2:4])
    g_size = torch.log(size / priors[..., 2:4]) / variance[1]
    return torch.cat([g_centre, g_size], dim=-1)


def decode(loc: torch.Tensor, priors: torch.Tensor,
           variance: tuple[float, float] = DEFAULT_VARIANCE) -> torch.Tensor:
    """Invert `encode`: regression outputs [..., 4] -> normalised point-form boxes."""
    centre = priors[..., :2] + loc[..., :2] * variance[0] * priors[..., 2:4]
    size = priors[..., 2:4] * torch.exp(loc[..., 2:4] * variance[1])
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def encode_landmarks(landmarks: torch.Tensor, priors: torch.Tensor,
                     variance: tuple[float, float] = DEFAULT_VARIANCE) -> torch.Tensor:
    """Encode five (x, y) landmark points [..., 10] against priors [..., 4]."""
    points = landmarks.reshape(*landmarks.shape[:-1], 5, 2)
    encoded = (points - priors[..., None, :2]) / (variance[0] * priors[..., None, 2:4])
    return encoded.reshape(*landmarks.shape[:-1], 10)


def decode_landmarks(landm: torch.Tensor, priors: torch.Tensor,
                     variance: tuple[float, float] = DEFAULT_VARIANCE) -> torch.Tensor:
    """Invert `encode_landmarks`: [..., 10] -> normalised landmark coordinates."""
    points = landm.reshape(*landm.shape[:-1], 5, 2)
    decoded = priors[..., None, :2] + points * variance[0] * priors[..., None, 2:4]
    return decoded.reshape(*landm.shape[:-1], 10)


def iou_matrix(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """IoU of every box in `boxes_a` [N, 4] with every box in `boxes_b` [M, 4] (continuous coordinates)."""
    return box_iou(boxes_a, boxes_b)
