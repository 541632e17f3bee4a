"""The model registry: `register_model`, `create_model`, `list_models`.

A model is registered by decorating a builder function that takes keyword overrides and
returns an `nn.Module` following the model contract of docs/design.md::

    @register_model("featherface_v2_tiny")
    def featherface_v2_tiny(**overrides):
        return build_detector(replace(FEATHERFACE_V2, neck_channels=24), **overrides)

`create_model(name, **overrides)` calls the builder and stamps `model.name` and
`model.overrides` on the result, so a checkpoint written from it can rebuild it.
Builders defined in other files of `ffcore.models` register when `ffcore.models` is
imported (add the module to the registering imports in `ffcore/models/__init__.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable

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


def config_with_overrides(preset, overrides: dict, what: str = "model"):
    """`dataclasses.replace(preset, **overrides)`, with an error listing the valid fields for unknown keys."""
    known = {f.name for f in fields(preset)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown {what} option(s) {', '.join(unknown)}; "
                        f"{type(preset).__name__} fields are: {', '.join(sorted(known))}")
    return replace(preset, **overrides)


def register_model(name: str, description: str = "") -> Callable:
    """Decorator: register `builder(**overrides) -> nn.Module` under `name`."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"model name {name!r} is already registered by {_REGISTRY[name].builder.__module__}")
        doc = description or ((builder.__doc__ or "").strip().splitlines() or [""])[0]
        _REGISTRY[name] = ModelEntry(name, builder, doc)
        return builder

    return decorate


def _ensure_builtin_models() -> None:
    # The built-in models live in sibling modules; importing the package registers them.
    import ffcore.models  # noqa: F401


def list_models() -> list[str]:
    """Registered model names, sorted."""
    _ensure_builtin_models()
    return sorted(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    _ensure_builtin_models()
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
