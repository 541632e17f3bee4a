"""Pruned architectures: the channel surgery on the context (SSH) modules and the registered
`<base>_pruned20` variants.

The pruning tool (`ffcore.pruning`: prune a trained model, report parameters and FLOPs)
sits above the models; what a registered variant needs to rebuild its shapes lives here,
where every other model is registered.

What is pruned. The thesis proposes removing 20 % of the SSH channels. An SSH's *output*
width is the neck width that the channel-shuffle blocks and heads consume (and the grouped
shuffle of V2 fixes it to a multiple of 16), so the pruning removes the SSH's *internal*
channels — the outputs of the convolutions whose results feed other convolutions of the
same SSH — and keeps every SSH's output width. The pruned model is a drop-in replacement:
neck, shuffle and heads are untouched.

Per SSH style, the prunable layers (producer -> consumers) are:

- plain (RetinaFace) and deformable (V1): `conv5x5_1` -> `conv5x5_2`, `conv7x7_2`;
  `conv7x7_2` -> `conv7x7_3`.
- grouped (V2): `conv3x3.reduce` -> `conv3x3.spatial`; `conv5x5_1.reduce` -> `conv5x5_1.spatial`;
  `conv5x5_1.spatial` -> `conv5x5_2`, `conv7x7_2`; `conv7x7_2` -> `conv7x7_3`.

Grouped consumers need the same number of input channels in every group, so in V2 the
unit of pruning is a *slice*: the j-th channel of every group (4 channels at once).

How many and which. The number of channels removed is `round(ratio x prunable channels)`
per SSH, shared between its layers in proportion to their size (largest remainder; at
least one unit kept per layer). This allocation depends only on the architecture, so a
registered variant (`featherface_v2_pruned20`) rebuilds the pruned shapes and reloads a
checkpoint of a pruned-then-fine-tuned model. Within a layer the units with the smallest
mean L1 filter norm are removed (Li et al., "Pruning Filters for Efficient ConvNets").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ffcore.models.context import SSH, DeformConvBNAct, ReduceThenGroupedConv
from ffcore.models.registry import create_model, register_model

DEFAULT_RATIO = 0.2


@dataclass
class PrunableLayer:
    """A producer whose output channels only feed `consumers` (inside one SSH)."""

    path: str
    producer: nn.Module            # ConvBNAct or DeformConvBNAct
    consumers: tuple[nn.Module, ...]
    groups: int                    # channel groups the consumers (and a grouped producer) impose

    @property
    def channels(self) -> int:
        return _out_channels(self.producer)

    @property
    def units(self) -> int:
        return self.channels // self.groups


def _main_weight(block: nn.Module) -> torch.Tensor:
    return block.conv.weight


def _out_channels(block: nn.Module) -> int:
    return _main_weight(block).shape[0]


def prunable_layers(ssh: SSH) -> list[PrunableLayer]:
    """The SSH's internal layers in forward order (see the module docstring)."""
    if isinstance(ssh.conv3x3, ReduceThenGroupedConv):
        groups = ssh.conv5x5_2.conv.groups
        return [
            PrunableLayer("conv3x3.reduce", ssh.conv3x3.reduce, (ssh.conv3x3.spatial,), groups),
            PrunableLayer("conv5x5_1.reduce", ssh.conv5x5_1.reduce, (ssh.conv5x5_1.spatial,), groups),
            PrunableLayer("conv5x5_1.spatial", ssh.conv5x5_1.spatial, (ssh.conv5x5_2, ssh.conv7x7_2), groups),
            PrunableLayer("conv7x7_2", ssh.conv7x7_2, (ssh.conv7x7_3,), groups),
        ]
    return [
        PrunableLayer("conv5x5_1", ssh.conv5x5_1, (ssh.conv5x5_2, ssh.conv7x7_2), 1),
        PrunableLayer("conv7x7_2", ssh.conv7x7_2, (ssh.conv7x7_3,), 1),
    ]


def context_modules(model: nn.Module) -> list[SSH]:
    """The SSH modules of a detector (one per pyramid level)."""
    found = [m for m in model.modules() if isinstance(m, SSH)]
    if not found:
        raise ValueError(f"{getattr(model, 'name', type(model).__name__)} has no SSH context module to prune")
    return found


def units_to_remove(layers: list[PrunableLayer], ratio: float) -> list[int]:
    """Units removed per layer: round(ratio x channels) channels shared by largest remainder.

    Depends only on the layer shapes, so the same call rebuilds a pruned architecture.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"pruning ratio must be in [0, 1), got {ratio}")
    total = sum(layer.channels for layer in layers)
    target = round(ratio * total)
    quotas = [ratio * layer.units for layer in layers]
    removed = [min(math.floor(q), layer.units - 1) for q, layer in zip(quotas, layers)]
    channels = sum(r * layer.groups for r, layer in zip(removed, layers))
    # Hand out what is left, largest remainder first (ties: forward order), one unit at a time.
    order = sorted(range(len(layers)), key=lambda i: (-(quotas[i] - math.floor(quotas[i])), i))
    for i in order:
        layer = layers[i]
        if channels + layer.groups > target or removed[i] >= layer.units - 1:
            continue
        removed[i] += 1
        channels += layer.groups
    return removed


def unit_scores(layer: PrunableLayer) -> torch.Tensor:
    """Mean L1 norm of the producer's filters per unit (unit j = channel j of every group)."""
    weight = _main_weight(layer.producer).detach()
    per_filter = weight.abs().flatten(1).sum(dim=1)              # [channels]
    return per_filter.view(layer.groups, layer.units).mean(dim=0)


def _kept_channels(layer: PrunableLayer, kept_units: torch.Tensor) -> torch.Tensor:
    units = layer.units
    return torch.cat([g * units + kept_units for g in range(layer.groups)])


def _conv_like(conv: nn.Conv2d, in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                     conv.groups, bias=conv.bias is not None, padding_mode=conv.padding_mode)


def _slice_batchnorm(bn: nn.BatchNorm2d, keep: torch.Tensor) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(keep), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                         track_running_stats=bn.track_running_stats)
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight[keep])
            new.bias.copy_(bn.bias[keep])
        if bn.track_running_stats:
            new.running_mean.copy_(bn.running_mean[keep])
            new.running_var.copy_(bn.running_var[keep])
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new.train(bn.training)   # a fresh module starts in training mode; keep the model's mode


def _prune_outputs(block: nn.Module, keep: torch.Tensor) -> None:
    if isinstance(block, DeformConvBNAct):
        block.conv.weight = nn.Parameter(block.conv.weight.detach()[keep].clone())
    else:
        conv = block.conv
        new = _conv_like(conv, conv.in_channels, len(keep))
        with torch.no_grad():
            new.weight.copy_(conv.weight[keep])
            if conv.bias is not None:
                new.bias.copy_(conv.bias[keep])
        block.conv = new
    block.bn = _slice_batchnorm(block.bn, keep)


def _slice_conv_inputs(conv: nn.Conv2d, within_group: torch.Tensor) -> nn.Conv2d:
    """Keep, in every group of `conv`, the input channels `within_group` (indices inside a group)."""
    new = _conv_like(conv, len(within_group) * conv.groups, conv.out_channels)
    with torch.no_grad():
        new.weight.copy_(conv.weight[:, within_group])
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _prune_inputs(block: nn.Module, keep: torch.Tensor) -> None:
    """`keep`: channel indices for an ungrouped consumer, within-group indices for a grouped one."""
    if isinstance(block, DeformConvBNAct):
        deform = block.conv
        deform.weight = nn.Parameter(deform.weight.detach()[:, keep].clone())
        deform.offset_conv = _slice_conv_inputs(deform.offset_conv, keep)
        deform.mask_conv = _slice_conv_inputs(deform.mask_conv, keep)
    else:
        block.conv = _slice_conv_inputs(block.conv, keep)


def _prune_layer(layer: PrunableLayer, remove: int, by_l1: bool) -> None:
    if remove == 0:
        return
    if by_l1:
        # Lowest L1 first; stable so equal scores keep forward order.
        kept_units = torch.sort(torch.argsort(unit_scores(layer), stable=True)[remove:]).values
    else:
        kept_units = torch.arange(layer.units - remove)
    keep = _kept_channels(layer, kept_units)
    _prune_outputs(layer.producer, keep)
    # A grouped consumer indexes its inputs within a group: pass the kept units (uniform per group).
    for consumer in layer.consumers:
        groups = consumer.conv.groups if not isinstance(consumer, DeformConvBNAct) else 1
        _prune_inputs(consumer, kept_units if groups > 1 else keep)


def remove_context_channels(model: nn.Module, ratio: float, by_l1: bool) -> nn.Module:
    """Remove `ratio` of every SSH's internal channels of `model` in place and return it.

    `by_l1`: which units go inside a layer, the lowest mean L1 filter norms (pruning a trained
    model) or the last ones (only the shapes matter: building an architecture to load into).
    """
    for ssh in context_modules(model):
        layers = prunable_layers(ssh)
        for layer, remove in zip(layers, units_to_remove(layers, ratio)):
            _prune_layer(layer, remove, by_l1)
    return model


def build_pruned(base: str, ratio: float = DEFAULT_RATIO, **overrides) -> nn.Module:
    """The architecture of `prune_context(create_model(base), ratio)` with fresh weights (for loading checkpoints)."""
    model = remove_context_channels(create_model(base, **overrides), ratio, by_l1=False)
    model.pruning_ratio = ratio
    return model


PRUNABLE_BASES = ("featherface_v2", "featherface_v1", "retinaface_mnet025")


def _register_variants() -> None:
    for base in PRUNABLE_BASES:
        name = f"{base}_pruned{round(DEFAULT_RATIO * 100)}"

        def builder(_base=base, **overrides):
            return build_pruned(_base, DEFAULT_RATIO, **overrides)

        register_model(name, f"{base} with {round(DEFAULT_RATIO * 100)}% of the SSH internal channels "
                             "pruned (L1 filter norm)")(builder)


_register_variants()
