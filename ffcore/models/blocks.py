"""Small building blocks shared by backbones, necks, context modules and heads."""

from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F


def make_activation(name: str | None) -> nn.Module:
    """`None` (identity), "relu", "leaky_relu" (slope 0.1, as in RetinaFace) or "silu"."""
    if name is None:
        return nn.Identity()
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(0.1, inplace=True)
    if name == "silu":
        return nn.SiLU()
    raise ValueError(f"unknown activation {name!r}; use None, 'relu', 'leaky_relu' or 'silu'")


class ConvBNAct(nn.Module):
    """Conv2d -> BatchNorm2d -> optional activation (keys `conv.*`, `bn.*`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None, groups: int = 1, bias: bool = False,
                 activation: str | None = None, bn_eps: float = 1e-5, bn_momentum: float = 0.1):
        super().__init__()
        if padding is None:
            padding = kernel_size // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def tf_same_pad(x: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """Zero-pad like TensorFlow's "same": extra = (ceil(n/s) - 1)*s - n + k, floor half before.

    FeatherFace V1's BiFPN (EfficientDet code) pads this way before its 3x3 convs and its
    max-pools; for stride 2 on an even side the extra pixel goes after, not before, which
    plain `padding=1` would get wrong. Computed in the equal closed form
    max(k - s + (-n mod s), 0): without ceil-divisions, torch.export's symbolic shape
    reasoning stays tractable during ONNX export (the ceil form takes minutes, then fails).
    """
    height, width = x.shape[-2:]
    extra_h = max(kernel_size - stride + (-height) % stride, 0)
    extra_w = max(kernel_size - stride + (-width) % stride, 0)
    return F.pad(x, [extra_w // 2, extra_w - extra_w // 2, extra_h // 2, extra_h - extra_h // 2])


def upsample_to(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Nearest upsampling to the reference's spatial size (exact for odd sizes too)."""
    return F.interpolate(x, size=reference.shape[-2:], mode="nearest")


def channel_shuffle(x: torch.Tensor, groups: int, order: str = "standard") -> torch.Tensor:
    """Channel shuffle.

    "standard" (ShuffleNet): view (B, groups, C/groups, H, W) and swap dims 1, 2.
    "alternative" (FeatherFace V1): view (B, C/groups, groups, H, W) and swap dims 1, 2 --
    the transpose of the standard permutation; both orders are kept for weight parity.
    """
    batch, channels, height, width = x.shape
    if channels % groups:
        raise ValueError(f"channel shuffle: {channels} channels do not split into {groups} groups")
    if order == "standard":
        x = x.view(batch, groups, channels // groups, height, width)
    elif order == "alternative":
        x = x.view(batch, channels // groups, groups, height, width)
    else:
        raise ValueError(f"unknown channel shuffle order {order!r}; use 'standard' or 'alternative'")
    return x.transpose(1, 2).reshape(batch, channels, height, width)
