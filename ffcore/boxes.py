"""Box and landmark coding, IoU and NMS (vectorised; no loops over priors).

`nms` and `box_iou` compute exactly what `torchvision.ops`' functions of the same names do
(tests/cli/test_startup.py compares them) without importing torchvision: its package import pulls
in torch._dynamo and doubles the start-up of `ffcore detect`.

Boxes are in point form (x1, y1, x2, y2) unless a name says otherwise; priors are
(cx, cy, w, h). `variance` always comes from a `PriorConfig`.
"""

from __future__ import annotations

import numpy as np
import torch

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


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of point-form boxes [N, 4] (integer boxes computed in 32/64-bit, half precision in float32)."""
    boxes = _upcast(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _upcast(t: torch.Tensor) -> torch.Tensor:
    # as torchvision: no overflow in products of small integer or half-precision coordinates
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t if t.dtype in (torch.int32, torch.int64) else t.int()


def box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """IoU [N, M] of point-form boxes [N, 4] and [M, 4] (`torchvision.ops.box_iou`)."""
    area_a, area_b = box_area(boxes_a), box_area(boxes_b)
    top_left = torch.max(boxes_a[:, None, :2], boxes_b[:, :2])
    bottom_right = torch.min(boxes_a[:, None, 2:], boxes_b[:, 2:])
    wh = _upcast(bottom_right - top_left).clamp(min=0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    return inter / (area_a[:, None] + area_b - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression (`torchvision.ops.nms`): indices of the kept boxes [N, 4]
    (x1, y1, x2, y2), by decreasing score; a box is dropped when its IoU with a kept, higher-scoring
    box exceeds `iou_threshold`.

    Runs in NumPy on the CPU, in the boxes' precision, with torchvision's order of operations:
    a stable descending sort (ties keep index order), the IoU as inter / (area_i + area_j - inter),
    and the comparison with the threshold in float64 (the C++ kernel compares float with double)."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    coords = boxes.detach().cpu().numpy()
    x1, y1, x2, y2 = (np.ascontiguousarray(coords[:, k]) for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores.detach().cpu().numpy(), kind="stable")
    threshold = np.float64(iou_threshold)
    keep = []
    with np.errstate(invalid="ignore", divide="ignore"):    # two empty boxes: 0 / 0 is NaN, kept as torchvision does
        while order.size:
            i, rest = order[0], order[1:]
            keep.append(i)
            w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
            h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
            inter = w * h
            order = rest[~(inter / (areas[i] + areas[rest] - inter) > threshold)]
    return torch.as_tensor(np.asarray(keep, dtype=np.int64), device=boxes.device)


def iou_matrix(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """IoU of every box in `boxes_a` [N, 4] with every box in `boxes_b` [M, 4] (continuous coordinates)."""
    return box_iou(boxes_a, boxes_b)
