"""A transcription (numpy, written for the tests) of the original test script's steps for one
image, shared by the tests that compare ffcore's detections with the original pipeline's.

The steps of Pytorch_Retinaface's `test_widerface.py`, which FeatherFace's test script copies:
float32 BGR image, optional cv2 resize (--origin_size, or short side 1600 with the long side at
most 2150), minus (104, 117, 123), forward, the prior boxes of min_sizes [[16, 32], [64, 128],
[256, 512]] and steps [8, 16, 32], decode and decode_landm with variance (0.1, 0.2), softmax score,
score > 0.02, sort, py_cpu_nms at 0.4 (areas with "+1"), no top-k caps (the script's lines applying
--top_k / --keep_top_k are commented out).
"""

from __future__ import annotations

from itertools import product
from math import ceil

import numpy as np
import torch
import torch.nn.functional as F


def reference_resize(height: int, width: int, origin_size: bool) -> float:
    target_size, max_size = 1600, 2150
    resize = float(target_size) / float(min(height, width))
    if np.round(resize * max(height, width)) > max_size:
        resize = float(max_size) / float(max(height, width))
    return 1.0 if origin_size else resize


def reference_priors(height: int, width: int) -> torch.Tensor:
    min_sizes, steps = [[16, 32], [64, 128], [256, 512]], [8, 16, 32]
    anchors = []
    for k, step in enumerate(steps):
        for i, j in product(range(ceil(height / step)), range(ceil(width / step))):
            for min_size in min_sizes[k]:
                anchors += [(j + 0.5) * step / width, (i + 0.5) * step / height, min_size / width, min_size / height]
    return torch.Tensor(anchors).view(-1, 4)


def reference_nms(dets: np.ndarray, thresh: float) -> list[int]:
    x1, y1, x2, y2, scores = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3], dets[:, 4]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1, yy1 = np.maximum(x1[i], x1[order[1:]]), np.maximum(y1[i], y1[order[1:]])
        xx2, yy2 = np.minimum(x2[i], x2[order[1:]]), np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        overlap = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(overlap <= thresh)[0] + 1]
    return keep


def reference_detections(model: torch.nn.Module, image_path, origin_size: bool = True) -> np.ndarray:
    """Rows (x1, y1, x2, y2, score, 10 landmark coordinates) the original script keeps after NMS,
    in the original image's pixels, in its order."""
    import cv2

    img = np.float32(cv2.imread(str(image_path), cv2.IMREAD_COLOR))
    resize = reference_resize(img.shape[0], img.shape[1], origin_size)
    if resize != 1:
        img = cv2.resize(img, None, None, fx=resize, fy=resize, interpolation=cv2.INTER_LINEAR)
    height, width = img.shape[:2]
    img -= (104, 117, 123)
    tensor = torch.from_numpy(img.transpose(2, 0, 1)).unsqueeze(0)
    with torch.no_grad():
        loc, conf, landms = model(tensor)[:3]
    conf = F.softmax(conf, dim=-1)          # the network's test phase
    priors = reference_priors(height, width)
    loc, pre = loc.squeeze(0), landms.squeeze(0)
    boxes = torch.cat((priors[:, :2] + loc[:, :2] * 0.1 * priors[:, 2:], priors[:, 2:] * torch.exp(loc[:, 2:] * 0.2)), 1)
    boxes[:, :2] -= boxes[:, 2:] / 2
    boxes[:, 2:] += boxes[:, :2]
    boxes = (boxes * torch.Tensor([width, height, width, height]) / resize).numpy()
    landmarks = torch.cat([priors[:, :2] + pre[:, 2 * k:2 * k + 2] * 0.1 * priors[:, 2:] for k in range(5)], dim=1)
    landmarks = (landmarks * torch.Tensor([width, height] * 5) / resize).numpy()
    scores = conf.squeeze(0).numpy()[:, 1]
    inds = np.where(scores > 0.02)[0]
    boxes, landmarks, scores = boxes[inds], landmarks[inds], scores[inds]
    order = scores.argsort()[::-1]
    boxes, landmarks, scores = boxes[order], landmarks[order], scores[order]
    dets = np.hstack((boxes, scores[:, np.newaxis])).astype(np.float32, copy=False)
    keep = reference_nms(dets, 0.4)
    return np.concatenate((dets[keep], landmarks[keep]), axis=1)
