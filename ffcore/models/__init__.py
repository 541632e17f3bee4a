"""Face detectors: parts, assembly, registry and checkpoint loading.

    from ffcore.models import create_model, list_models, load_pretrained
    model = create_model("featherface_v2")
    model = load_pretrained("featherface_v1", "weights/featherface_v1.pth")

Registering a model defined in a new file: decorate its builder with
`ffcore.models.register_model("name")` and add the module to `_MODEL_MODULES` below so it
registers when the package is imported.
"""

from __future__ import annotations

import importlib

from ffcore.models.detector import PARTS, Detector, DetectorConfig, build_detector
from ffcore.models.registry import UnknownModelError, create_model, list_models, model_entry, register_model

# Modules that register models on import (importing them builds nothing).
_MODEL_MODULES = ("ffcore.models.zoo", "ffcore.models.v2_ultra", "ffcore.models.v2_vit", "ffcore.pruning")

for _module in _MODEL_MODULES:
    importlib.import_module(_module)


def load_pretrained(name, source, **kwargs):
    """See `ffcore.models.loading.load_pretrained`."""
    from ffcore.models.loading import load_pretrained as _load

    return _load(name, source, **kwargs)


__all__ = ["PARTS", "Detector", "DetectorConfig", "UnknownModelError", "build_detector", "create_model",
           "list_models", "load_pretrained", "model_entry", "register_model"]
