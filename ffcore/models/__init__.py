"""Face detectors: parts, assembly, registry and checkpoint loading.

    from ffcore.models import create_model, list_models, load_pretrained
    model = create_model("featherface_v2")
    model = load_pretrained("featherface_v1", "weights/featherface_v1.pth")

Registering a model defined in a new file: decorate its builder with
`ffcore.models.register_model("name")` and import the module below so it registers when
the package is imported. Every registered model lives in this package (the pruned
variants in `ffcore.models.pruned`); nothing here imports a layer above the models.
"""

from __future__ import annotations

from ffcore.models.detector import PARTS, Detector, DetectorConfig, build_detector
from ffcore.models.registry import (UnknownModelError, create_model, list_models, load_pretrained, model_entry,
                                    register_model)

# Modules that register models on import (importing them builds nothing).
from ffcore.models import zoo, v2_ultra, v2_vit, pruned  # noqa: F401  (registers them, in listing order)


__all__ = ["PARTS", "Detector", "DetectorConfig", "UnknownModelError", "build_detector", "create_model",
           "list_models", "load_pretrained", "model_entry", "register_model"]
