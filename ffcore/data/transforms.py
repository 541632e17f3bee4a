"""Training augmentation (the RetinaFace / FeatherFace recipe) and the evaluation transform.

Both are callables `transform(image_bgr uint8 [H, W, 3], targets float32 [n, 15] in pixels,
rng) -> (image float32 [3, S, S] BGR minus mean, targets float32 [n, 15] normalised)`.
Targets are x1, y1, x2, y2, five landmark points (x, y), label (1 with landmarks, -1 without).

Training recipe, in order (as Pytorch_Retinaface's `preproc`):
1. random square crop: side = scale x short side, scale from `crop_scales`; keep the faces
   whose centre lies strictly inside; the crop must contain at least one whole face;
   after `crop_attempts` failures use the whole image (then padded to a square);
2. photometric distortion (brightness, contrast, saturation, hue, in one of two orders);
3. pad to a square with the mean colour (only for the uncropped fallback);
4. horizontal mirror with probability 1/2: landmarks are mirrored and the left/right
   points swapped (eyes, mouth corners) so "first eye" stays the eye on the image's left;
5. resize to `image_size` with a random interpolation, subtract the mean, HWC -> CHW.

All randomness comes from the `np.random.Generator` passed in (never global state), so
the same generator seed gives the same sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ffcore.preprocess import MEAN_BGR

INTERPOLATIONS = ("linear", "cubic", "area", "nearest", "lanczos4")
# Landmark order: eye (image left), eye (image right), nose, mouth corner (left), mouth corner (right).
MIRROR_POINT_ORDER = (1, 0, 2, 4, 3)


def _cv2_interpolation(name: str) -> int:
    import cv2

    return {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA,
            "nearest": cv2.INTER_NEAREST, "lanczos4": cv2.INTER_LANCZOS4}[name]


@dataclass(frozen=True)
class TrainTransformConfig:
    image_size: int = 640
    crop_scales: tuple[float, ...] = (0.3, 0.45, 0.6, 0.8, 1.0)
    crop_attempts: int = 250
    distort: bool = True
    mirror_probability: float = 0.5
    interpolations: tuple[str, ...] = INTERPOLATIONS
    mean_bgr: tuple[float, float, float] = MEAN_BGR
    # Faces narrower or shorter than this many pixels at training size are dropped after
    # the crop. The reference recipe's test is "> 0", i.e. nothing is dropped.
    min_face_size: float = 0.0
    # False: return the uint8 BGR image [3, S, S] and leave "minus the mean" to the consumer (the trainer
    # does it on the device: a quarter of the bytes through the loader and host-to-device copy)
    normalise: bool = True

    def __post_init__(self):
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32, got {self.image_size}")
        unknown = set(self.interpolations) - set(INTERPOLATIONS)
        if unknown or not self.interpolations:
            raise ValueError(f"interpolations must be a non-empty subset of {INTERPOLATIONS}, got {self.interpolations}")
        if not self.crop_scales or not all(0 < s <= 1 for s in self.crop_scales):
            raise ValueError(f"crop_scales must be in (0, 1], got {self.crop_scales}")


def random_square_crop(image: np.ndarray, targets: np.ndarray, rng: np.random.Generator,
                       scales=(0.3, 0.45, 0.6, 0.8, 1.0), attempts: int = 250, image_size: int = 640,
                       min_face_size: float = 0.0) -> tuple[np.ndarray, np.ndarray, bool]:
    """Crop a random square; returns (image, pixel targets, cropped?). Not cropped = fallback."""
    height, width = image.shape[:2]
    boxes = targets[:, :4]
    short_side = min(width, height)
    if len(targets) == 0:
        # No face: every attempt fails the whole-face test. Make the attempts' draws without their box
        # arithmetic, so the generator ends where the full loop leaves it and every later draw is the same.
        for _ in range(attempts):
            side = int(scales[rng.integers(len(scales))] * short_side)
            if side >= 1 and width != side:
                rng.integers(width - side)
            if side >= 1 and height != side:
                rng.integers(height - side)
        return image, targets.copy(), False
    for _ in range(attempts):
        side = int(scales[rng.integers(len(scales))] * short_side)
        if side < 1:
            continue
        left = 0 if width == side else int(rng.integers(width - side))
        top = 0 if height == side else int(rng.integers(height - side))
        roi = np.array([left, top, left + side, top + side], dtype=np.float32)
        # At least one face must lie wholly inside the crop.
        whole = ((boxes[:, 0] >= roi[0]) & (boxes[:, 1] >= roi[1]) &
                 (boxes[:, 2] <= roi[2]) & (boxes[:, 3] <= roi[3]))
        if not whole.any():
            continue
        centres = (boxes[:, :2] + boxes[:, 2:4]) / 2
        inside = ((centres > roi[:2]) & (centres < roi[2:])).all(axis=1)
        kept = targets[inside].copy()
        kept[:, 0:4:2] = np.clip(kept[:, 0:4:2], roi[0], roi[2]) - roi[0]
        kept[:, 1:4:2] = np.clip(kept[:, 1:4:2], roi[1], roi[3]) - roi[1]
        with_landmarks = kept[:, 14] > 0
        points = kept[:, 4:14].reshape(-1, 5, 2)
        points[with_landmarks] = np.clip(points[with_landmarks] - roi[:2], 0, side)
        kept[:, 4:14] = points.reshape(-1, 10)
        face_w = (kept[:, 2] - kept[:, 0] + 1) / side * image_size
        face_h = (kept[:, 3] - kept[:, 1] + 1) / side * image_size
        kept = kept[np.minimum(face_w, face_h) > min_face_size]
        if len(kept) == 0:
            continue
        return image[top:top + side, left:left + side], kept, True
    return image, targets.copy(), False


def _scale_shift(channel: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> None:
    channel[...] = np.clip(channel.astype(np.float32) * alpha + beta, 0, 255)


def _scale_shift_table(alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """`_scale_shift` of each of the 256 grey levels: the same float32 arithmetic and truncation, so
    looking a pixel up in it gives exactly what `_scale_shift` computes for that pixel."""
    levels = np.arange(256, dtype=np.uint8)
    _scale_shift(levels, alpha, beta)
    return levels


_IDENTITY_TABLE = np.arange(256, dtype=np.uint8)


def photometric_distort(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation, hue, each applied with probability 1/2, in one of two orders.

    Each adjustment maps a pixel's level through a function of that level alone (a scale and shift
    clipped to 0-255, or a hue rotation), so it is applied as a 256-entry look-up table (`cv2.LUT`):
    the same values as computing it pixel by pixel in float32 (`_scale_shift`), at a fraction of the
    cost, with the same draws in the same order. Saturation and hue, on two channels of one HSV
    image, are one three-channel table. The HSV round trip is kept even when neither is drawn: it is
    not the identity in 8 bits, and the reference recipe always makes it."""
    import cv2

    contrast_first = rng.integers(2) == 1

    def brightness(img):
        if rng.integers(2):
            return cv2.LUT(img, _scale_shift_table(beta=rng.uniform(-32, 32)))
        return img

    def contrast(img):
        if rng.integers(2):
            return cv2.LUT(img, _scale_shift_table(alpha=rng.uniform(0.5, 1.5)))
        return img

    def saturation_and_hue(img):
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        saturation = _scale_shift_table(alpha=rng.uniform(0.5, 1.5)) if rng.integers(2) else _IDENTITY_TABLE
        # OpenCV's 8-bit hue is in [0, 180).
        hue = ((np.arange(256) + int(rng.integers(-18, 19))) % 180).astype(np.uint8) if rng.integers(2) \
            else _IDENTITY_TABLE
        if saturation is not _IDENTITY_TABLE or hue is not _IDENTITY_TABLE:
            hsv = cv2.LUT(hsv, np.stack([hue, saturation, _IDENTITY_TABLE], axis=1).reshape(1, 256, 3))
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)

    image = brightness(np.ascontiguousarray(image))
    if contrast_first:
        image = saturation_and_hue(contrast(image))
    else:
        image = contrast(saturation_and_hue(image))
    return image


def pad_to_square(image: np.ndarray, mean_bgr=MEAN_BGR) -> np.ndarray:
    """Pad right/bottom to a square with the mean colour (so padding becomes 0 after mean subtraction)."""
    import cv2

    height, width = image.shape[:2]
    side = max(height, width)
    if height == width:
        return image
    fill = np.asarray(mean_bgr, dtype=np.float32).round().astype(image.dtype)
    return cv2.copyMakeBorder(image, 0, side - height, 0, side - width, cv2.BORDER_CONSTANT,
                              value=[float(v) for v in fill])


def mirror(image: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip left-right: boxes, landmarks (x -> W - x) and swap the left/right points."""
    width = image.shape[1]
    flipped = targets.copy()
    flipped[:, 0] = width - targets[:, 2]
    flipped[:, 2] = width - targets[:, 0]
    with_landmarks = flipped[:, 14] > 0
    points = targets[:, 4:14].reshape(-1, 5, 2).copy()
    points[:, :, 0] = width - points[:, :, 0]
    points = points[:, MIRROR_POINT_ORDER, :]
    landmarks = flipped[:, 4:14]
    landmarks[with_landmarks] = points[with_landmarks].reshape(-1, 10)
    import cv2

    return cv2.flip(image, 1), flipped     # the same pixels as image[:, ::-1], a few times faster


def normalise_targets(targets: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel targets -> [0, 1] coordinates; landmarks of label -1 faces stay -1."""
    out = targets.astype(np.float32).copy()
    scale = np.array([width, height] * 7, dtype=np.float32)
    with_landmarks = out[:, 14] > 0
    out[:, :4] /= scale[:4]
    out[with_landmarks, 4:14] /= scale[4:14]
    out[~with_landmarks, 4:14] = -1.0
    return out


def normalise_batch(images, mean_bgr=MEAN_BGR):
    """uint8 BGR batch [B, 3, H, W] (any device) -> float32 minus the mean: `to_network_input`'s arithmetic
    (each pixel to float32, minus the float32 mean), so results are identical wherever it runs."""
    import torch

    mean = torch.tensor(mean_bgr, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return images.to(torch.float32) - mean


def to_network_input(image: np.ndarray, mean_bgr=MEAN_BGR) -> np.ndarray:
    """BGR uint8 [H, W, 3] -> float32 [3, H, W] minus the mean."""
    # Plane by plane straight into the CHW output: ~4x faster than convert-subtract-transpose-copy.
    out = np.empty((3, *image.shape[:2]), dtype=np.float32)
    for channel, mean in enumerate(mean_bgr):
        np.subtract(image[:, :, channel], np.float32(mean), out=out[channel], dtype=np.float32)
    return out


class TrainTransform:
    """The training augmentation; see the module docstring."""

    def __init__(self, config: TrainTransformConfig = TrainTransformConfig()):
        self.config = config

    def __call__(self, image: np.ndarray, targets: np.ndarray, rng: np.random.Generator):
        import cv2

        cfg = self.config
        targets = np.asarray(targets, dtype=np.float32).reshape(-1, 15)
        image, targets, cropped = random_square_crop(image, targets, rng, cfg.crop_scales, cfg.crop_attempts,
                                                     cfg.image_size, cfg.min_face_size)
        if cfg.distort:
            image = photometric_distort(image, rng)
        if not cropped:
            image = pad_to_square(image, cfg.mean_bgr)
        if rng.uniform() < cfg.mirror_probability:
            image, targets = mirror(image, targets)
        height, width = image.shape[:2]
        interpolation = _cv2_interpolation(cfg.interpolations[rng.integers(len(cfg.interpolations))])
        image = cv2.resize(image, (cfg.image_size, cfg.image_size), interpolation=interpolation)
        network_image = to_network_input(image, cfg.mean_bgr) if cfg.normalise else image.transpose(2, 0, 1)
        return network_image, normalise_targets(targets, width, height)


@dataclass(frozen=True)
class EvalTransformConfig:
    """Resize the long side to `image_size` (None: keep the size), pad right/bottom to a square."""

    image_size: int | None = 640
    pad_to_square: bool = True
    mean_bgr: tuple[float, float, float] = MEAN_BGR


class EvalTransform:
    """No augmentation: letterbox to a square (for validation losses and batched inference)."""

    def __init__(self, config: EvalTransformConfig = EvalTransformConfig()):
        self.config = config

    def __call__(self, image: np.ndarray, targets: np.ndarray, rng: np.random.Generator | None = None):
        import cv2

        cfg = self.config
        targets = np.asarray(targets, dtype=np.float32).reshape(-1, 15).copy()
        height, width = image.shape[:2]
        if cfg.image_size is not None and max(height, width) != cfg.image_size:
            scale = cfg.image_size / max(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
            scale_x, scale_y = size[0] / width, size[1] / height
            with_landmarks = targets[:, 14] > 0
            targets[:, 0:4:2] *= scale_x
            targets[:, 1:4:2] *= scale_y
            targets[with_landmarks, 4:14:2] *= scale_x
            targets[with_landmarks, 5:14:2] *= scale_y
        if cfg.pad_to_square:
            image = pad_to_square(image, cfg.mean_bgr)
        height, width = image.shape[:2]
        return to_network_input(image, cfg.mean_bgr), normalise_targets(targets, width, height)
