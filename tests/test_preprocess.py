"""Image reading and the input tensor (ffcore.preprocess): errors name the file."""

import numpy as np
import pytest
import torch

from ffcore.preprocess import ImageReadError, image_to_tensor, read_image


def test_image_reading_errors_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="missing.jpg"):
        read_image(tmp_path / "missing.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        read_image(broken)
    tensor = image_to_tensor(np.full((4, 5, 3), 120, dtype=np.uint8))
    assert tensor.shape == (1, 3, 4, 5)
    assert torch.allclose(tensor[0, :, 0, 0], torch.tensor([16.0, 3.0, -3.0]))
