"""Running a detector on one image: test scale, optional flip and multi-scale, merged by NMS.

Decoding and NMS of a single forward pass is `ffcore.postprocess.postprocess`; this module
only chooses the input size(s) and merges passes (flip / several scales).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import torch

from ffcore.anchors import DEFAULT_PRIORS, PriorConfig
from ffcore.boxes import nms
from ffcore.postprocess import DEFAULT_POSTPROCESS, Detections, PostprocessConfig, postprocess
from ffcore.preprocess import image_to_tensor

VGA_LONG_SIDE = 640
# Pytorch_Retinaface's test_widerface.py without --origin_size: the short side scaled to 1600
# pixels unless the long side would then exceed 2150, in which case the long side is 2150.
PYTORCH_RETINAFACE_SCALE = "short1600max2150"
_SHORT_SIDE_SCALE = re.compile(r"short(\d+)max(\d+)")
# Left/right eye and left/right mouth corner swap places in a mirrored image.
_FLIP_LANDMARK_ORDER = (1, 0, 2, 4, 3)


def parse_scale(scale: str | int) -> str | int:
    """"origin", "vga", a long side in pixels (int or digit string), or "short<S>max<L>"
    (short side S unless the long side would exceed L; PYTORCH_RETINAFACE_SCALE is S=1600, L=2150)."""
    if isinstance(scale, int) or (isinstance(scale, str) and scale.isdigit()):
        value = int(scale)
        if value < 32:
            raise ValueError(f"test scale {value}: the long side must be at least 32 pixels")
        return value
    if scale in ("origin", "vga"):
        return scale
    match = _SHORT_SIDE_SCALE.fullmatch(str(scale))
    if match:
        short, long = int(match.group(1)), int(match.group(2))
        if not 32 <= short <= long:
            raise ValueError(f"test scale {scale!r}: need 32 <= short side <= long side limit")
        return scale
    raise ValueError(f"unknown test scale {scale!r}: use 'origin' (image as is), 'vga' (long side 640), "
                     f"a long side in pixels such as 1024, or '{PYTORCH_RETINAFACE_SCALE}' "
                     "(Pytorch_Retinaface's test_widerface.py scale)")


def resize_factor(height: int, width: int, scale: str | int) -> float:
    """Factor applied to the image before the network for a test scale."""
    scale = parse_scale(scale)
    if scale == "origin":
        return 1.0
    if isinstance(scale, str) and scale.startswith("short"):
        short, long = (int(v) for v in _SHORT_SIDE_SCALE.fullmatch(scale).groups())
        factor = float(short) / float(min(height, width))
        # the reference rounds the scaled long side before comparing it with the limit
        if np.round(factor * max(height, width)) > long:
            factor = float(long) / float(max(height, width))
        return factor
    long_side = VGA_LONG_SIDE if scale == "vga" else scale
    return long_side / max(height, width)


def scale_label(scale: str | int, multiscale: bool = False, flip: bool = False) -> str:
    """How a result was produced, for tables and metadata ("origin", "vga", "long1024", "+ms", "+flip")."""
    scale = parse_scale(scale)
    label = scale if isinstance(scale, str) else f"long{scale}"
    return label + ("+ms" if multiscale else "") + ("+flip" if flip else "")


# Caps on the number of detections per image: (top-k by score before NMS, kept after NMS).
# The released Pytorch_Retinaface and FeatherFace test_widerface.py scripts parse --top_k 5000
# and --keep_top_k 750 but leave the lines applying them commented out, so they keep every
# detection above the score threshold; the thesis fork's script applies both.
DETECTION_CAPS: dict[str, tuple[int | None, int | None]] = {"none": (None, None), "fork": (5000, 750)}
DEFAULT_DETECTION_CAPS = "none"


def postprocess_with_caps(caps: str, base: PostprocessConfig = DEFAULT_POSTPROCESS) -> PostprocessConfig:
    """`base` with the named detection caps (a key of DETECTION_CAPS)."""
    if caps not in DETECTION_CAPS:
        raise ValueError(f"unknown detection caps {caps!r}; use one of {', '.join(DETECTION_CAPS)}")
    pre_nms_top_k, keep_top_k = DETECTION_CAPS[caps]
    return replace(base, pre_nms_top_k=pre_nms_top_k, keep_top_k=keep_top_k)


def caps_name(config: PostprocessConfig) -> str:
    """The DETECTION_CAPS name of a config's caps ("custom" when they are none of them)."""
    caps = (config.pre_nms_top_k, config.keep_top_k)
    return next((name for name, value in DETECTION_CAPS.items() if value == caps), "custom")


@dataclass(frozen=True)
class TestTimeConfig:
    """Multi-scale factors (relative to the base scale), flip, and the post-processing
    (thresholds and detection caps; by default those of the released test scripts: no caps)."""

    multiscale_factors: tuple[float, ...] = (0.5, 1.0, 1.5)
    max_pixels: int = 2500 * 2500      # larger passes are skipped: memory and time, not accuracy, would suffer
    postprocess: PostprocessConfig = postprocess_with_caps(DEFAULT_DETECTION_CAPS)


DEFAULT_TEST_TIME = TestTimeConfig()


def _forward(model: torch.nn.Module, image_bgr: np.ndarray, resize: float, device,
             config: PostprocessConfig = DEFAULT_TEST_TIME.postprocess) -> Detections:
    import cv2

    if resize != 1.0:
        # Resized in float32, as the reference test scripts do (np.float32 before cv2.resize):
        # resizing the uint8 image would round every interpolated pixel to an integer.
        image_bgr = cv2.resize(np.float32(image_bgr), None, None, fx=resize, fy=resize,
                               interpolation=cv2.INTER_LINEAR)
    tensor = image_to_tensor(image_bgr, device)
    with torch.inference_mode():
        loc, conf, landm = model(tensor)[:3]
    return postprocess(loc, conf, landm, input_size=tuple(tensor.shape[2:]), resize=resize,
                       prior_config=model_prior_config(model), config=config)[0]


def model_prior_config(model) -> PriorConfig:
    """The anchors the model's head predicts for (`model.prior_config`).

    Decoding with any other geometry pairs outputs with the wrong priors (a 9-anchor head
    decoded with the 2-anchor default indexes past the priors), so every inference path
    asks the model; only a model that declares nothing gets the default two anchors."""
    return getattr(model, "prior_config", DEFAULT_PRIORS)


def _unflip(detections: Detections, width: int) -> Detections:
    boxes = detections.boxes.clone()
    boxes[:, 0], boxes[:, 2] = width - detections.boxes[:, 2], width - detections.boxes[:, 0]
    points = detections.landmarks.reshape(-1, 5, 2)[:, list(_FLIP_LANDMARK_ORDER)].clone()
    points[..., 0] = width - points[..., 0]
    return Detections(boxes, detections.scores, points.reshape(-1, 10))


def merge_detections(parts: list[Detections], config: PostprocessConfig = DEFAULT_TEST_TIME.postprocess) -> Detections:
    """NMS over the union of several passes (same "+1 pixel" IoU and limits as a single pass)."""
    boxes = torch.cat([p.boxes for p in parts])
    scores = torch.cat([p.scores for p in parts])
    landmarks = torch.cat([p.landmarks for p in parts])
    widened = boxes + boxes.new_tensor([0.0, 0.0, 1.0, 1.0])
    keep = nms(widened, scores, config.nms_iou)[: config.keep_top_k]
    return Detections(boxes[keep], scores[keep], landmarks[keep])


def detect_image(model: torch.nn.Module, image_bgr: np.ndarray, scale: str | int = "origin",
                 multiscale: bool = False, flip: bool = False, device: str | torch.device = "cpu",
                 config: TestTimeConfig = DEFAULT_TEST_TIME) -> Detections:
    """Detections of one BGR image in its own pixels, sorted by descending score."""
    height, width = image_bgr.shape[:2]
    base = resize_factor(height, width, scale)
    factors = [base * f for f in config.multiscale_factors] if multiscale else [base]
    factors = [f for f in factors if (height * f) * (width * f) <= config.max_pixels] or [min(factors)]
    parts = []
    for factor in factors:
        parts.append(_forward(model, image_bgr, factor, device, config.postprocess))
        if flip:
            flipped = _forward(model, np.ascontiguousarray(image_bgr[:, ::-1]), factor, device, config.postprocess)
            parts.append(_unflip(flipped, width))
    if len(parts) == 1:
        return parts[0]
    return merge_detections(parts, config.postprocess)


def detections_to_xywh_score(detections: Detections) -> np.ndarray:
    """[k, 5] x, y, w, h, score (the prediction-file layout) from point-form detections."""
    boxes = detections.boxes.detach().cpu().double().numpy().reshape(-1, 4)
    scores = detections.scores.detach().cpu().double().numpy().reshape(-1, 1)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2], scores], axis=1)
