"""Context modules applied to each pyramid level: SSH, deformable SSH (V1), grouped SSH (V2).

All three keep the SSH layout: branch a (3x3 receptive field, half the output channels),
a shared stem b1, branch b (5x5) and branch c (7x7, via c1), each a quarter of the output
channels; output ReLU(cat[a, b, c]). Branch names follow the SSH paper's receptive fields.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ffcore.models.blocks import ConvBNAct, make_activation


DEFORM_IMPLEMENTATIONS = ("auto", "torchvision", "grid_sample")


def _is_tracing_for_export() -> bool:
    """True while the model is being traced into a graph (ONNX export, torch.export, jit.trace).

    Those graphs must carry `torchvision::deform_conv2d` itself: the ONNX exporter turns it
    into the standard `DeformConv` operator, and FLOP counters hook it by name.
    """
    return (torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()
            or torch.jit.is_tracing() or torch.jit.is_scripting())


def resolve_deform_implementation(implementation: str, x: torch.Tensor) -> str:
    """The concrete implementation ("torchvision" or "grid_sample") an `implementation` setting uses for x.

    "auto": torchvision's operator when tracing for export and on accelerators (its CUDA kernel
    is fast); the vectorised grid_sample formulation on the CPU, where torchvision's kernel
    (its backward pass above all) is several times slower.
    """
    if implementation not in DEFORM_IMPLEMENTATIONS:
        raise ValueError(f"unknown deformable convolution implementation {implementation!r}; "
                         f"use one of {', '.join(DEFORM_IMPLEMENTATIONS)}")
    if implementation != "auto":
        return implementation
    if _is_tracing_for_export() or x.device.type != "cpu":
        return "torchvision"
    return "grid_sample"


def _check_deform_shapes(x, offset, weight, mask, stride, padding, dilation) -> tuple[int, int, int, int]:
    """(taps, out_h, out_w, kernel_w) of a modulated deformable convolution; raises on inconsistent shapes."""
    batch, in_channels, height, width = x.shape
    out_channels, weight_in, kernel_h, kernel_w = weight.shape
    taps = kernel_h * kernel_w
    if weight_in != in_channels:
        raise ValueError(f"deform_conv2d_grid_sample supports groups=1 only: weight expects {weight_in} "
                         f"input channels, input has {in_channels}")
    out_h = (height + 2 * padding - dilation * (kernel_h - 1) - 1) // stride + 1
    out_w = (width + 2 * padding - dilation * (kernel_w - 1) - 1) // stride + 1
    if offset.shape != (batch, 2 * taps, out_h, out_w):
        raise ValueError(f"offset must have shape {(batch, 2 * taps, out_h, out_w)} (one offset group), "
                         f"got {tuple(offset.shape)}")
    if mask is not None and mask.shape != (batch, taps, out_h, out_w):
        raise ValueError(f"mask must have shape {(batch, taps, out_h, out_w)}, got {tuple(mask.shape)}")
    return taps, out_h, out_w, kernel_w


def _sampling_grid(offset: torch.Tensor, kernel_h: int, kernel_w: int, height: int, width: int, stride: int,
                   padding: int, dilation: int) -> torch.Tensor:
    """grid_sample's normalised (x, y) of every tap and output position: [B, taps, Ho, Wo, 2].

    Output (h, w), tap (i, j) reads pixel (h*s - p + i*d + dy, w*s - p + j*d + dx). Positions are in
    at least float32 (as torchvision's autocast rule does): in bfloat16 a coordinate near 100 would be
    rounded to half a pixel."""
    batch, _, out_h, out_w = offset.shape
    taps = kernel_h * kernel_w
    dtype, device = offset.dtype, offset.device
    tap_i = torch.arange(kernel_h, device=device, dtype=dtype).repeat_interleave(kernel_w) * dilation
    tap_j = torch.arange(kernel_w, device=device, dtype=dtype).repeat(kernel_h) * dilation
    rows = torch.arange(out_h, device=device, dtype=dtype) * stride - padding
    cols = torch.arange(out_w, device=device, dtype=dtype) * stride - padding
    offset = offset.reshape(batch, taps, 2, out_h, out_w)
    y = offset[:, :, 0] + (tap_i[:, None, None] + rows[None, :, None])     # [B, taps, Ho, Wo]
    x_pos = offset[:, :, 1] + (tap_j[:, None, None] + cols[None, None, :])
    # grid_sample with align_corners=False reads pixel coordinate p at (2p + 1) / size - 1; its
    # zero padding then matches torchvision's border handling (also for sizes of 1).
    return torch.stack(((2 * x_pos + 1) / width - 1, (2 * y + 1) / height - 1), dim=-1)


def deform_conv2d_grid_sample(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                              bias: torch.Tensor | None = None, stride: int = 1, padding: int = 1,
                              dilation: int = 1, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Modulated deformable convolution (DCNv2) with `torchvision.ops.deform_conv2d`'s semantics,
    built from a 1x1 convolution and `F.grid_sample` so that autograd's backward is vectorised.

    Layouts as torchvision: offset [B, 2*kh*kw, Ho, Wo] holding (dy, dx) per kernel tap in
    row-major tap order; mask [B, kh*kw, Ho, Wo] multiplies the sampled value. Samples are
    bilinear with zeros outside the image, exactly like torchvision's bilinear_interpolate
    (a sample at or beyond one pixel outside contributes nothing). One group, one offset group.

    Stride 1 projects first: bilinear sampling is linear and the same for every channel, so
    sum_c W[o, c, t] * sample_t(x_c) = sample_t(sum_c W[o, c, t] * x_c). Projecting the input onto
    each tap's weights (one 1x1 convolution to taps x C_out channels) and sampling those maps reads
    C_out channels per tap instead of C_in: half to a quarter of the sampling in V1's 64-channel
    context convolutions (benchmarks/bench_deform_conv.py). The same values up to rounding, whose
    order changes; other strides sample first (`deform_conv2d_sample_first`).
    """
    if stride != 1:
        return deform_conv2d_sample_first(x, offset, weight, bias, stride, padding, dilation, mask)
    taps, out_h, out_w, _ = _check_deform_shapes(x, offset, weight, mask, stride, padding, dilation)
    batch, _, height, width = x.shape
    out_channels, in_channels, kernel_h, kernel_w = weight.shape
    dtype = torch.promote_types(offset.dtype, torch.float32)
    offset, x = offset.to(dtype), x.to(torch.promote_types(x.dtype, dtype))
    grid = _sampling_grid(offset, kernel_h, kernel_w, height, width, stride, padding, dilation)
    # [C_out, C_in, kh, kw] -> taps x C_out 1x1 filters, tap-major: channel t*C_out + o is W[o, :, t]
    per_tap = weight.to(x.dtype).permute(2, 3, 0, 1).reshape(taps * out_channels, in_channels, 1, 1)
    projected = F.conv2d(x, per_tap)                                     # [B, taps*C_out, H, W]
    projected = projected.contiguous().view(batch * taps, out_channels, height, width)
    sampled = F.grid_sample(projected, grid.reshape(batch * taps, out_h, out_w, 2), mode="bilinear",
                            padding_mode="zeros", align_corners=False)  # [B*taps, C_out, Ho, Wo]
    sampled = sampled.view(batch, taps, out_channels, out_h, out_w)
    if mask is not None:
        sampled = sampled * mask.to(sampled.dtype).view(batch, taps, 1, out_h, out_w)
    out = sampled.sum(dim=1)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def deform_conv2d_sample_first(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                               bias: torch.Tensor | None = None, stride: int = 1, padding: int = 1,
                               dilation: int = 1, mask: torch.Tensor | None = None) -> torch.Tensor:
    """`deform_conv2d_grid_sample` in the other order: sample C_in channels per tap, then one matmul
    against the weight (im2col style). Any stride; the reference the projected form is measured against."""
    taps, out_h, out_w, _ = _check_deform_shapes(x, offset, weight, mask, stride, padding, dilation)
    batch, in_channels, height, width = x.shape
    out_channels, _, kernel_h, kernel_w = weight.shape
    dtype = torch.promote_types(offset.dtype, torch.float32)
    offset, x = offset.to(dtype), x.to(torch.promote_types(x.dtype, dtype))
    grid = _sampling_grid(offset, kernel_h, kernel_w, height, width, stride, padding, dilation)
    sampled = F.grid_sample(x, grid.view(batch, taps * out_h, out_w, 2), mode="bilinear",
                            padding_mode="zeros", align_corners=False)      # [B, C, taps*Ho, Wo]
    sampled = sampled.view(batch, in_channels, taps, out_h, out_w)
    if mask is not None:
        sampled = sampled * mask.view(batch, 1, taps, out_h, out_w)
    columns = sampled.view(batch, in_channels * taps, out_h * out_w)
    # bmm against the broadcast weight reads the columns in place; torch.matmul would fold the
    # batch into one mm and copy the (large) columns into a transposed layout first.
    flat_weight = weight.reshape(1, out_channels, in_channels * taps).expand(batch, -1, -1)
    out = torch.bmm(flat_weight, columns)
    out = out.view(batch, out_channels, out_h, out_w)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def _torchvision_deform_conv2d():
    """`torchvision.ops.deform_conv2d`, imported by the layers that use it rather than with this module:
    torchvision's package import costs about a second (it loads torch._dynamo), and models without
    deformable convolutions never need it. Each layer imports it when it is built, not first in
    `forward`: a first import inside a TorchScript trace (fvcore's FLOP count) fails on
    torchvision's CUDA-version probe."""
    from torchvision.ops import deform_conv2d

    return deform_conv2d


class ModulatedDeformConv2d(nn.Module):
    """DCNv2 3x3: offsets (18 ch) and a 2*sigmoid mask (9 ch) predicted by 3x3 convs.

    Offset and mask convs start at zero, so the layer starts as a plain 3x3 conv. The main
    weight is a free parameter applied functionally, which is why profilers that only hook
    standard layers (thop) do not count it.

    `implementation` picks how the deformable sampling runs (see `resolve_deform_implementation`):
    "torchvision" (`torchvision.ops.deform_conv2d`), "grid_sample" (`deform_conv2d_grid_sample`,
    same values, several times faster forward+backward on the CPU) or "auto" (torchvision when
    exporting or on an accelerator, grid_sample otherwise). An explicit choice is honoured even
    while exporting, so keep "auto" (the default) on models that will be exported to ONNX.
    It is a plain attribute, not part of the state dict; change it on a built model with
    `set_deform_implementation`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1,
                 implementation: str = "auto"):
        super().__init__()
        resolve_deform_implementation(implementation, torch.empty(0))   # reject unknown names early
        _torchvision_deform_conv2d()    # loaded with the layer: a first import inside a trace fails
        taps = kernel_size * kernel_size
        self.padding = padding
        self.implementation = implementation
        self.offset_conv = nn.Conv2d(in_channels, 2 * taps, kernel_size, padding=padding, bias=True)
        self.mask_conv = nn.Conv2d(in_channels, taps, kernel_size, padding=padding, bias=True)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)  # nn.Conv2d's default initialisation
        for conv in (self.offset_conv, self.mask_conv):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset = self.offset_conv(x)
        mask = 2.0 * torch.sigmoid(self.mask_conv(x))
        if resolve_deform_implementation(self.implementation, x) == "grid_sample":
            return deform_conv2d_grid_sample(x, offset, self.weight, padding=self.padding, mask=mask)
        return _torchvision_deform_conv2d()(x, offset, self.weight, bias=None, padding=self.padding, mask=mask)


def set_deform_implementation(model: nn.Module, implementation: str) -> int:
    """Set `implementation` on every ModulatedDeformConv2d in `model`; returns how many were set."""
    resolve_deform_implementation(implementation, torch.empty(0))
    layers = [m for m in model.modules() if isinstance(m, ModulatedDeformConv2d)]
    for layer in layers:
        layer.implementation = implementation
    return len(layers)


class DeformConvBNAct(nn.Module):
    """ModulatedDeformConv2d -> BN -> optional activation (keys `conv.*`, `bn.*`)."""

    def __init__(self, in_channels: int, out_channels: int, activation: str | None = None):
        super().__init__()
        self.conv = ModulatedDeformConv2d(in_channels, out_channels)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ReduceThenGroupedConv(nn.Module):
    """V2 branch entry: 1x1 conv -> BN -> ReLU, then grouped 3x3 conv -> BN."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.reduce = ConvBNAct(in_channels, out_channels, 1, activation="relu")
        self.spatial = ConvBNAct(out_channels, out_channels, 3, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.reduce(x))


class SSH(nn.Module):
    """SSH context module with one of three convolution styles.

    style "plain" (RetinaFace): 3x3 convs, LeakyReLU(0.1) after b1 and c1.
    style "deformable" (FeatherFace V1): the same with every 3x3 conv a DCNv2.
    style "grouped" (FeatherFace V2): 1x1 reductions and grouped 3x3 convs, ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, style: str = "plain", groups: int = 4):
        super().__init__()
        if out_channels % 4:
            raise ValueError(f"SSH output channels must be a multiple of 4, got {out_channels}")
        half, quarter = out_channels // 2, out_channels // 4
        if style in ("plain", "deformable"):
            def conv(i, o, act=None):
                if style == "plain":
                    return ConvBNAct(i, o, 3, activation=act)
                return DeformConvBNAct(i, o, activation=act)

            self.conv3x3 = conv(in_channels, half)
            self.conv5x5_1 = conv(in_channels, quarter, "leaky_relu")
            self.conv5x5_2 = conv(quarter, quarter)
            self.conv7x7_2 = conv(quarter, quarter, "leaky_relu")
            self.conv7x7_3 = conv(quarter, quarter)
        elif style == "grouped":
            self.conv3x3 = ReduceThenGroupedConv(in_channels, half, groups)
            self.conv5x5_1 = ReduceThenGroupedConv(in_channels, quarter, groups)
            self.conv5x5_2 = ConvBNAct(quarter, quarter, 3, groups=groups)
            self.conv7x7_2 = ConvBNAct(quarter, quarter, 3, groups=groups, activation="relu")
            self.conv7x7_3 = ConvBNAct(quarter, quarter, 3, groups=groups)
        else:
            raise ValueError(f"unknown SSH style {style!r}; use 'plain', 'deformable' or 'grouped'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv3x3(x)
        b1 = self.conv5x5_1(x)
        b = self.conv5x5_2(b1)
        c = self.conv7x7_3(self.conv7x7_2(b1))
        return torch.relu(torch.cat([a, b, c], dim=1))


class LevelContext(nn.Module):
    """One context module per pyramid level (no sharing between levels)."""

    def __init__(self, channels: int, style: str, levels: int = 3):
        super().__init__()
        self.levels = nn.ModuleList(SSH(channels, channels, style) for _ in range(levels))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [module(x) for module, x in zip(self.levels, features)]


CONTEXT_STYLES = {"ssh": "plain", "deformable_ssh": "deformable", "grouped_ssh": "grouped"}
