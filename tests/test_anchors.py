"""Priors (ffcore.anchors): count, order and the grid on odd image sizes."""

import math

import torch

from ffcore.anchors import PriorConfig, feature_map_sizes, make_priors, num_priors


def test_priors_count_and_order_at_640():
    priors = make_priors(640, 640)
    assert priors.shape == (16800, 4) == (num_priors(640, 640), 4)
    # first level, row 0, col 0: both anchor sizes at the first cell centre
    assert torch.allclose(priors[0], torch.tensor([4 / 640, 4 / 640, 16 / 640, 16 / 640]))
    assert torch.allclose(priors[1], torch.tensor([4 / 640, 4 / 640, 32 / 640, 32 / 640]))
    # next column comes next (row-major, anchors innermost)
    assert torch.allclose(priors[2, :2], torch.tensor([12 / 640, 4 / 640]))
    # the last prior is the last cell of the stride-32 level with the 512 anchor
    assert torch.allclose(priors[-1], torch.tensor([(19 + 0.5) * 32 / 640, (19 + 0.5) * 32 / 640, 512 / 640, 512 / 640]))


def test_priors_on_odd_sizes_use_ceil_grid_and_are_not_clipped():
    height, width = 683, 1024
    sizes = feature_map_sizes(height, width)
    assert sizes == [(math.ceil(683 / 8), 128), (math.ceil(683 / 16), 64), (math.ceil(683 / 32), 32)]
    priors = make_priors(height, width)
    assert priors.shape[0] == sum(r * c * 2 for r, c in sizes)
    assert priors[:, 2:].max() > 0.7  # 512 / 683: large anchors are not clipped
    assert make_priors(height, width, PriorConfig(clip=True)).max() <= 1.0
