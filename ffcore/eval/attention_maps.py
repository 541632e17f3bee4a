"""Attention masks of a detector for one image, read through forward hooks.

For every attention module (one per backbone stage and one per pyramid level) this returns
the channel mask M_c [C], the spatial mask M_s [H, W] and the combined mask M_c * M_s
[C, H, W]: each module scales its input by exactly that product (CBAM and ECA -> SAM apply
the spatial mask to the channel-gated tensor, the parallel ECA-CBAM to the input, but in
all cases output = input * M_c * M_s before any residual). The fork's own study draws these
three masks per backbone stage and per pyramid level.

The hooks sit on the layers whose outputs are the masks' logits (CBAM's channel MLP and
spatial BN, V2's shared spatial gate, ECA's Conv1d and SAM's conv), so the models are used
unchanged and the masks are the ones the forward pass really applied.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ffcore.models.attention import CBAM, ECACBAM, ECACBAMParallel, LevelAttention, LevelCBAM, SharedCBAM

BACKBONE_STAGES = ("C3", "C4", "C5")
PYRAMID_LEVELS = ("P3", "P4", "P5")


@dataclass(frozen=True)
class AttentionMasks:
    """The masks one attention module applied to one image."""

    module: str                 # the module's name in the model, e.g. "backbone_attention.levels.0"
    position: str               # "C3".."C5" (after a backbone stage) or "P3".."P5" (after the neck)
    kind: str                   # "cbam", "shared_cbam", "eca_cbam" or "eca_cbam_parallel"
    channel: torch.Tensor       # [C]
    spatial: torch.Tensor       # [H, W]

    @property
    def combined(self) -> torch.Tensor:
        """M_c * M_s, [C, H, W]: what the module multiplies its input by."""
        return self.channel[:, None, None] * self.spatial[None]


class _Recorder:
    """Forward hooks appending each watched layer's output, in call order."""

    def __init__(self):
        self.outputs: dict[nn.Module, list[torch.Tensor]] = {}
        self._handles = []

    def watch(self, layer: nn.Module) -> None:
        if layer in self.outputs:    # V2's spatial gate serves three levels: one hook, three calls
            return
        self.outputs[layer] = []

        def hook(_module, _inputs, output):
            self.outputs[layer].append(output.detach())

        self._handles.append(layer.register_forward_hook(hook))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _units(model: nn.Module) -> list[tuple[str, str, str, nn.Module, nn.Module, int]]:
    """(module name, position, kind, channel-logit layer, spatial-logit layer, call index of the spatial layer)
    for every attention module of the model, in forward order."""
    units = []
    for attribute, positions in (("backbone_attention", BACKBONE_STAGES), ("neck_attention", PYRAMID_LEVELS)):
        part = getattr(model, attribute, None)
        if part is None:
            continue
        if isinstance(part, SharedCBAM):
            for level, gate in enumerate(part.channel_gates):
                units.append((f"{attribute}.channel_gates.{level}", positions[level], "shared_cbam",
                              gate.mlp, part.spatial_gate.bn, level))
        elif isinstance(part, (LevelCBAM, LevelAttention)):
            for level, module in enumerate(part.levels):
                name = f"{attribute}.levels.{level}"
                if isinstance(module, CBAM):
                    units.append((name, positions[level], "cbam", module.channel_gate.mlp, module.spatial_gate.bn, 0))
                elif isinstance(module, (ECACBAM, ECACBAMParallel)):
                    kind = "eca_cbam" if isinstance(module, ECACBAM) else "eca_cbam_parallel"
                    units.append((name, positions[level], kind, module.eca.conv, module.sam.conv, 0))
                else:
                    raise TypeError(f"{name}: attention module {type(module).__name__} has no mask reader; "
                                    f"add it to ffcore.eval.attention_maps._units")
        else:
            raise TypeError(f"{attribute}: attention part {type(part).__name__} has no mask reader; "
                            f"add it to ffcore.eval.attention_maps._units")
    return units


def _channel_mask(kind: str, calls: list[torch.Tensor], unit: str) -> torch.Tensor:
    if kind == "eca_cbam" or kind == "eca_cbam_parallel":
        if len(calls) != 1:
            raise RuntimeError(f"{unit}: ECA's conv ran {len(calls)} times in one forward pass, expected once")
        return torch.sigmoid(calls[0][0, 0])                       # Conv1d output [B, 1, C]
    if len(calls) != 2:
        raise RuntimeError(f"{unit}: the channel MLP ran {len(calls)} times in one forward pass, expected twice "
                           f"(average and max pool)")
    return torch.sigmoid(calls[0][0] + calls[1][0])                # MLP(avg) + MLP(max), [B, C]


def attention_masks(model: nn.Module, image: torch.Tensor) -> list[AttentionMasks]:
    """Masks of every attention module for one preprocessed image ([3, H, W] or [1, 3, H, W], BGR - mean).

    The model runs once in eval mode under `torch.no_grad()`; its mode is restored afterwards.
    """
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"attention_masks takes one image [3, H, W] or [1, 3, H, W], got {tuple(image.shape)}")
    units = _units(model)
    if not units:
        raise ValueError(f"model {getattr(model, 'name', type(model).__name__)!r} has no attention modules")
    recorder = _Recorder()
    for _, _, _, channel_layer, spatial_layer, _ in units:
        recorder.watch(channel_layer)
        recorder.watch(spatial_layer)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(image.to(next(model.parameters()).device))
    finally:
        recorder.remove()
        model.train(was_training)
    masks = []
    for name, position, kind, channel_layer, spatial_layer, call in units:
        channel = _channel_mask(kind, recorder.outputs[channel_layer], name)
        spatial = torch.sigmoid(recorder.outputs[spatial_layer][call][0, 0])
        masks.append(AttentionMasks(name, position, kind, channel.cpu(), spatial.cpu()))
    return masks


def attention_masks_for_image(model: nn.Module, image_bgr: np.ndarray) -> list[AttentionMasks]:
    """`attention_masks` of a BGR image (as read by `ffcore.preprocess.read_image`) at its own size."""
    from ffcore.preprocess import image_to_tensor

    return attention_masks(model, image_to_tensor(image_bgr))


# ----------------------------------------------------------------------------- gate health

@dataclass(frozen=True)
class GateHealth:
    """How one channel gate behaved over a set of images.

    A channel whose gate output did not move over the images (range <= tolerance) is *constant*:
    it scales its channel by a fixed factor, which the next convolution could absorb, so it
    attends to nothing. A gate whose MLP's hidden ReLUs never fire outputs sigmoid(0) = 0.5 on
    every channel (no bias after the ReLU): V2's bias-free channel MLPs can end up there."""

    module: str
    position: str
    kind: str
    channels: int
    constant_channels: int
    hidden_units: int | None        # the channel MLP's hidden width (None: ECA has no MLP)
    dead_hidden_units: int | None   # hidden ReLUs that output 0 on every image (both pools)
    gate_min: float
    gate_max: float
    images: int

    @property
    def share_constant(self) -> float:
        return self.constant_channels / self.channels


def channel_gate_health(model: nn.Module, images, tolerance: float = 1e-6) -> list[GateHealth]:
    """`GateHealth` of every attention module's channel gate over `images` (preprocessed tensors, one
    image each, as `attention_masks` takes). The model runs in eval mode, unchanged."""
    units = _units(model)
    if not units:
        raise ValueError(f"model {getattr(model, 'name', type(model).__name__)!r} has no attention modules")
    recorder = _Recorder()
    hidden_layers = {}
    for name, _, kind, channel_layer, _, _ in units:
        recorder.watch(channel_layer)
        if isinstance(channel_layer, nn.Sequential):   # CBAM-style MLP: Linear, ReLU, Linear
            hidden_layers[name] = channel_layer[1]
            recorder.watch(channel_layer[1])
    gates = {name: [] for name, *_ in units}
    fired = {name: None for name in hidden_layers}
    was_training = model.training
    device = next(model.parameters()).device
    count = 0
    try:
        model.eval()
        with torch.no_grad():
            for image in images:
                image = image[None] if image.dim() == 3 else image
                for outputs in recorder.outputs.values():
                    outputs.clear()
                model(image.to(device))
                count += 1
                for name, _, kind, channel_layer, _, _ in units:
                    gates[name].append(_channel_mask(kind, recorder.outputs[channel_layer], name))
                    if name in hidden_layers:
                        calls = recorder.outputs[hidden_layers[name]]
                        active = torch.stack([call[0] > 0 for call in calls]).any(dim=0)
                        fired[name] = active if fired[name] is None else fired[name] | active
    finally:
        recorder.remove()
        model.train(was_training)
    if count == 0:
        raise ValueError("channel_gate_health needs at least one image")
    health = []
    for name, position, kind, _, _, _ in units:
        stacked = torch.stack(gates[name]).float().cpu()          # [images, C]
        spread = stacked.max(dim=0).values - stacked.min(dim=0).values
        hidden = fired.get(name)
        health.append(GateHealth(name, position, kind, stacked.shape[1], int((spread <= tolerance).sum()),
                                 None if hidden is None else int(hidden.numel()),
                                 None if hidden is None else int((~hidden).sum()),
                                 float(stacked.min()), float(stacked.max()), count))
    return health
