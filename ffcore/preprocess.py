"""Image reading and the network's input convention (BGR, minus the mean, no scaling)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

MEAN_BGR = (104.0, 117.0, 123.0)


class ImageReadError(OSError):
    """An image that is missing or that OpenCV cannot decode."""


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as BGR uint8 [H, W, 3]; raise `ImageReadError` naming the file otherwise."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageReadError(f"cannot decode image (not a readable image file?): {path}")
    return image


def image_to_tensor(image_bgr: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """BGR uint8/float [H, W, 3] -> float32 [1, 3, H, W] with the mean subtracted."""
    array = np.asarray(image_bgr, dtype=np.float32) - np.asarray(MEAN_BGR, dtype=np.float32)
    return torch.from_numpy(array.transpose(2, 0, 1).copy()).unsqueeze(0).to(device)
