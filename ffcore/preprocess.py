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


# Inputs for the parity and timing checks (export, deploy graph, benchmarks): a real photo when
# the shared folder has one, seeded noise otherwise.

def sample_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A BGR uint8 image of the given size: a shared demo photo resized, or seeded noise.

    A real photo gives the detector realistic activations (and postprocessing realistic
    candidate counts); the noise fallback keeps everything working without the shared folder.
    """
    import cv2

    from ffcore.paths import shared_dir

    photo = shared_dir() / "images" / "crowd.jpg"
    if photo.is_file():
        return cv2.resize(read_image(photo), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def sample_batch(height: int, width: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """float32 [batch, 3, H, W] in the network's input convention (BGR minus mean)."""
    image = image_to_tensor(sample_image(height, width, seed))
    if batch == 1:
        return image
    # Vary the images of a batch so a per-image mix-up in the graph would show in the parity check.
    flipped = torch.flip(image, dims=[3])
    return torch.cat([image if i % 2 == 0 else flipped for i in range(batch)], dim=0)
