"""WIDER FACE data: readers, layout discovery, augmentation, mixing and the synthetic dataset.

Submodules: `annotations` (label.txt / bbx_gt parsers), `datasets` (training datasets,
`detection_collate`), `ground_truth` (the official validation ground truth, `.mat` files,
read for the evaluator and for the validation index), `layout` (`WiderFaceLayout`),
`validation` (`ValidationIndex`),
`transforms` (training / evaluation transforms), `mixing` (MixUp, CutMix), `matfiles`
(evaluation .mat writer), `synth` (synthetic WIDER-format dataset).

Names are imported lazily so `import ffcore.data` stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AnnotationFormatError": "annotations", "ImageAnnotation": "annotations", "ParseReport": "annotations",
    "read_retinaface_labels": "annotations", "read_wider_bbx_gt": "annotations",
    "RetinaFaceLabelDataset": "datasets", "WiderBBoxDataset": "datasets", "detection_collate": "datasets",
    "MissingImagesError": "datasets",
    "GroundTruth": "ground_truth", "GroundTruthError": "ground_truth", "load_ground_truth": "ground_truth",
    "WiderFaceLayout": "layout", "LayoutError": "layout",
    "ValidationIndex": "validation", "ValidationEntry": "validation",
    "TrainTransform": "transforms", "TrainTransformConfig": "transforms",
    "EvalTransform": "transforms", "EvalTransformConfig": "transforms",
    "MixConfig": "mixing", "mix_batch": "mixing", "mixup_batch": "mixing", "cutmix_batch": "mixing",
    "SynthConfig": "synth", "ensure_synthetic_dataset": "synth", "generate_synthetic_dataset": "synth",
    "preview_grid": "synth",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"ffcore.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ffcore.data' has no attribute {name!r}")
