"""The synthetic dataset's configuration: what is drawn, the difficulty thresholds, the fingerprint
that names a generated dataset (configuration + generator version)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from ffcore.report.provenance import SYNTHETIC_MARKER

GENERATOR_VERSION = 2
MANIFEST = SYNTHETIC_MARKER   # provenance reads it: a copied tree stays labelled synthetic

# event folder name -> scene kind
EVENTS = (("0--Portrait", "portrait"), ("1--Family", "group"), ("2--Meeting", "group"), ("3--Parade", "crowd"),
          ("4--Street", "street"), ("5--Stadium", "stadium"), ("6--Night", "night"))


@dataclass(frozen=True)
class SynthConfig:
    seed: int = 0
    train_images: int = 400
    val_images: int = 100
    test_images: int = 0              # held-out test split (0: none), written as its own evaluation tree
    # the test split's images draw from this seed instead of `seed` (None: `seed`): another test split
    # beside the same training and validation images, so a rerun tests the image part of an interval too
    test_seed: int | None = None
    min_long_side: int = 320
    max_long_side: int = 640
    min_face: float = 8.0             # smallest face height drawn, pixels
    max_face: float = 300.0           # largest face height drawn, pixels
    occlusion_probability: float = 0.2
    blur_probability: float = 0.15
    distractors: tuple[int, int] = (3, 10)
    clutter: tuple[int, int] = (15, 45)
    jpeg_quality: tuple[int, int] = (70, 95)
    events: tuple[tuple[str, str], ...] = EVENTS
    # difficulty rule (ffcore.data.synth.difficulty)
    hard_min_height: float = 8.0
    hard_min_visible: float = 0.4
    medium_min_height: float = 16.0
    medium_min_visible: float = 0.6
    easy_min_height: float = 40.0
    easy_min_visible: float = 0.85
    invalid_max_visible: float = 0.25
    hidden_max_visible: float = 0.1      # faces less visible than this are not annotated at all
    landmark_min_height: float = 12.0
    landmark_min_visible: float = 0.5

    def __post_init__(self):
        if self.train_images < 1 or self.val_images < 1:
            raise ValueError("train_images and val_images must be >= 1")
        if self.test_images < 0:
            raise ValueError(f"test_images must be >= 0, got {self.test_images}")
        if not 32 <= self.min_long_side <= self.max_long_side:
            raise ValueError(f"need 32 <= min_long_side <= max_long_side, got {self.min_long_side}, {self.max_long_side}")
        if not 4 <= self.min_face < self.max_face:
            raise ValueError(f"need 4 <= min_face < max_face, got {self.min_face}, {self.max_face}")

    def fingerprint(self) -> str:
        config = dataclasses.asdict(self)
        if not self.test_images:
            # a dataset without a test split keeps the fingerprint it had before the field existed,
            # so the folders already generated are not rewritten for nothing
            del config["test_images"]
        if self.test_seed is None:       # likewise for the test split's own seed
            del config["test_seed"]
        payload = json.dumps({"config": config, "generator": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


TINY_SYNTH = SynthConfig(train_images=6, val_images=4, min_long_side=160, max_long_side=256)
# Photos of WIDER FACE's size (1024 px on the long side, faces up to 400 px): what the loader and the
# training-throughput benchmarks time (benchmarks/bench_dataloader.py, bench_gpu_throughput.py).
WIDER_SIZED_SYNTH = SynthConfig(train_images=320, val_images=64, min_long_side=1024, max_long_side=1024,
                                max_face=400.0)
