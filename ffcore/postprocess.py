"""From raw head outputs to detections: the one decode + NMS used by every caller.

predict, detect, the notebooks and the export checks all call `postprocess`;
nothing else in the project decodes boxes for inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ffcore.anchors import DEFAULT_PRIORS, PriorConfig, make_priors
from ffcore.boxes import decode, decode_landmarks, nms


@dataclass(frozen=True)
class PostprocessConfig:
    """Decode and NMS settings. Threshold 0.02 and NMS IoU 0.4 are the released test scripts'
    (Pytorch_Retinaface / FeatherFace `test_widerface.py`). Those scripts parse the caps 5000 (before
    NMS) and 750 (after) but never apply them; the thesis fork's script does. WIDER FACE prediction
    therefore replaces these caps through `ffcore.eval.inference.DETECTION_CAPS` ("none" by default)."""

    score_threshold: float = 0.02
    pre_nms_top_k: int = 5000
    nms_iou: float = 0.4
    keep_top_k: int = 750


DEFAULT_POSTPROCESS = PostprocessConfig()


@dataclass
class Detections:
    """Detections of one image, in pixels of the original image, sorted by descending score."""

    boxes: torch.Tensor       # [N, 4] x1, y1, x2, y2
    scores: torch.Tensor      # [N]
    landmarks: torch.Tensor   # [N, 10] (x, y) x 5: left eye, right eye, nose, left mouth, right mouth

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def above(self, threshold: float) -> "Detections":
        keep = self.scores >= threshold
        return Detections(self.boxes[keep], self.scores[keep], self.landmarks[keep])

    def to_records(self) -> list[dict]:
        """JSON-ready list of {"box", "score", "landmarks"}."""
        return [{"box": [round(float(v), 2) for v in box],
                 "score": round(float(score), 5),
                 "landmarks": [round(float(v), 2) for v in landm]}
                for box, score, landm in zip(self.boxes.tolist(), self.scores.tolist(), self.landmarks.tolist())]


def nms_plus_one_pixel(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
                       keep_top_k: int | None = None) -> torch.Tensor:
    """Indices kept by NMS over pixel boxes [N, 4] (x1, y1, x2, y2), best score first, at most `keep_top_k`.

    The references' NMS (py_cpu_nms) measures areas with the "+1 pixel" convention; widening
    each box by one pixel makes torchvision's NMS compute exactly that IoU.
    """
    widened = boxes + boxes.new_tensor([0.0, 0.0, 1.0, 1.0])
    return nms(widened, scores, iou_threshold)[:keep_top_k]


def postprocess(loc: torch.Tensor, conf: torch.Tensor, landm: torch.Tensor, input_size: tuple[int, int],
                resize: float | tuple[float, float] = 1.0, priors: torch.Tensor | None = None,
                prior_config: PriorConfig = DEFAULT_PRIORS,
                config: PostprocessConfig = DEFAULT_POSTPROCESS) -> list[Detections]:
    """Decode a batch of raw outputs into per-image detections.

    loc [B, P, 4], conf [B, P, 2] logits, landm [B, P, 10] for network inputs of
    `input_size` = (height, width); `resize` is the factor the image was scaled by
    before entering the network (boxes are divided by it to land in original pixels).
    """
    height, width = input_size
    if priors is None:
        priors = make_priors(height, width, prior_config, device=loc.device)
    resize_y, resize_x = (resize, resize) if isinstance(resize, (int, float)) else resize
    box_scale = loc.new_tensor([width, height, width, height]) / loc.new_tensor([resize_x, resize_y, resize_x, resize_y])
    landm_scale = loc.new_tensor([width / resize_x, height / resize_y] * 5)

    scores_all = F.softmax(conf.float(), dim=-1)[..., 1]
    results = []
    for b in range(loc.shape[0]):
        scores = scores_all[b]
        candidates = torch.nonzero(scores > config.score_threshold).squeeze(1)
        order = torch.argsort(scores[candidates], descending=True)[: config.pre_nms_top_k]
        candidates = candidates[order]
        boxes = decode(loc[b, candidates].float(), priors[candidates], prior_config.variance) * box_scale
        landmarks = decode_landmarks(landm[b, candidates].float(), priors[candidates], prior_config.variance) * landm_scale
        scores = scores[candidates]
        keep = nms_plus_one_pixel(boxes, scores, config.nms_iou, config.keep_top_k)
        results.append(Detections(boxes[keep], scores[keep], landmarks[keep]))
    return results
