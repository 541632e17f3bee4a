"""Box and landmark coding (ffcore.boxes): encode and decode invert each other and follow the formula."""

import torch

from ffcore.anchors import make_priors
from ffcore.boxes import center_size, decode, decode_landmarks, encode, encode_landmarks, point_form


def test_encode_decode_round_trip():
    generator = torch.Generator().manual_seed(0)
    priors = make_priors(64, 96)
    centres = torch.rand(priors.shape[0], 2, generator=generator)
    sizes = torch.rand(priors.shape[0], 2, generator=generator) * 0.5 + 0.01
    boxes = point_form(torch.cat([centres, sizes], dim=1))
    assert torch.allclose(center_size(boxes), torch.cat([centres, sizes], dim=1), atol=1e-6)
    assert torch.allclose(decode(encode(boxes, priors), priors), boxes, atol=1e-5)
    landmarks = torch.rand(priors.shape[0], 10, generator=generator)
    assert torch.allclose(decode_landmarks(encode_landmarks(landmarks, priors), priors), landmarks, atol=1e-5)


def test_encode_matches_specified_formula():
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.1]])
    box = torch.tensor([[0.45, 0.48, 0.65, 0.58]])  # centre (0.55, 0.53), size (0.2, 0.1)
    expected = torch.tensor([[(0.55 - 0.5) / (0.1 * 0.2), (0.53 - 0.5) / (0.1 * 0.1), 0.0, 0.0]])
    assert torch.allclose(encode(box, prior), expected, atol=1e-5)
