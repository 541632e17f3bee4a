"""The model registry: `register_model`, `create_model`, `list_models`.

A model is registered by decorating a builder function that takes keyword overrides and
returns an `nn.Module` following the model contract of docs/design.md::

    @register_model("featherface_v2_tiny")
    def featherface_v2_tiny(**overrides):
        return build_detector(replace(FEATHERFACE_V2, neck_channels=24), **overrides)

`create_model(name, **overrides)` calls the builder and stamps `model.name` and
`model.overrides` on the result, so a checkpoint written from it can rebuild it;
`load_pretrained(name, source)` builds the model and loads weights into it (the weight
layouts are `ffcore.models.loading`'s, which knows nothing of the registry).
Builders defined in other files of `ffcore.models` register when `ffcore.models` is
imported (add the module to the registering imports in `ffcore/models/__init__.py`);
importing this module imports the package first, so the registry is never seen empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


class UnknownModelError(KeyError):
    """A model name that is not registered; the message lists the registered names."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


def register_model(name: str, description: str = "") -> Callable:
    """Decorator: register `builder(**overrides) -> nn.Module` under `name`."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"model name {name!r} is already registered by {_REGISTRY[name].builder.__module__}")
        doc = description or ((builder.__doc__ or "").strip().splitlines() or [""])[0]
        _REGISTRY[name] = ModelEntry(name, builder, doc)
        return builder

    return decorate


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}; registered models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(name: str, *, pretrained_backbone: bool | str | None = None, **overrides) -> nn.Module:
    """Build a registered model.

    `overrides` are passed to the model's builder (for the configurable detectors: any
    field of `DetectorConfig`, e.g. `neck="bifpn_light"`). `pretrained_backbone=True`
    initialises the MobileNet-0.25 from the ImageNet file found by
    `ffcore.paths.find_imagenet_backbone()`; a path uses that file instead.
    """
    entry = model_entry(name)
    model = entry.builder(**overrides)
    model.name = name
    model.overrides = dict(overrides)
    if pretrained_backbone:
        from ffcore.models.loading import load_imagenet_backbone

        path = None if pretrained_backbone is True else pretrained_backbone
        load_imagenet_backbone(model, path)
    return model


def load_pretrained(name: str, source: str | Path | dict, map_location: str | torch.device = "cpu",
                    **overrides) -> nn.Module:
    """Build `name` and load weights from `source` (a path or a loaded object).

    An ffcore checkpoint rebuilds the model with its recorded overrides (keyword
    `overrides` here are added on top) and must have been written for `name`; any other
    state dict is read in whichever layout of `ffcore.models.loading` fits the model.
    Returns the model in eval mode, with `model.weights_layout` naming the layout read.
    """
    from ffcore.checkpoint import CheckpointError, is_ffcore_checkpoint, load_checkpoint_file
    from ffcore.models.loading import extract_state_dict, load_state_dict_into

    model_entry(name)  # unknown names fail here, listing the registered ones
    where = str(source) if isinstance(source, (str, Path)) else "the given state dict"
    obj = load_checkpoint_file(source, map_location) if isinstance(source, (str, Path)) else source
    if is_ffcore_checkpoint(obj):
        saved_name = obj.get("model_name")
        if saved_name != name:
            raise CheckpointError(f"{where} is an ffcore checkpoint for model {saved_name!r}, not {name!r}; "
                                  f"call load_pretrained({saved_name!r}, ...)")
        model = create_model(name, **{**(obj.get("model_overrides") or {}), **overrides})
        state_dict = obj["state_dict"]
    else:
        model = create_model(name, **overrides)
        state_dict = extract_state_dict(obj, where)
    model.weights_layout = load_state_dict_into(model, state_dict, where)
    return model.eval()
