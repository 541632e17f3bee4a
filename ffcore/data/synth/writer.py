"""Writing a synthetic dataset in the WIDER FACE layouts (images, label.txt, bbx_gt lists, the
evaluation .mat files, the manifest), and generating it only when the folder does not hold it yet."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from ffcore.data.annotations import ImageAnnotation, write_retinaface_labels, write_wider_bbx_gt
from ffcore.data.layout import HELDOUT_TEST_DIR
from ffcore.data.ground_truth import SETTINGS
from ffcore.data.matfiles import write_ground_truth
from ffcore.data.synth.config import GENERATOR_VERSION, MANIFEST, SynthConfig
from ffcore.data.synth.difficulty import difficulty_masks, has_landmarks
from ffcore.data.synth.render import render_image

log = logging.getLogger("ffcore.data")

# Each image draws from its own generator seeded by (config seed, split code, index): the test
# split's images come from a stream of their own, disjoint from training and validation.
_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}


def _image_name(event: str, split: str, index: int) -> str:
    number, label = event.split("--", 1)
    return f"{number}_{label}_synth{split}_{index}"


def _render_split(root: Path, split: str, count: int, config: SynthConfig) -> tuple[list, list, list]:
    import cv2

    images_dir = root / ("WIDER_train" if split == "train" else "WIDER_val") / "images"
    annotations, flags, per_image = [], [], []
    for index in range(count):
        event, kind = config.events[index % len(config.events)]
        seed = config.test_seed if split == "test" and config.test_seed is not None else config.seed
        rng = np.random.default_rng([seed, _SPLIT_CODE[split], index])
        rendered = render_image(rng, kind, config)
        name = _image_name(event, split, index)
        path = images_dir / event / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
        if not cv2.imwrite(str(path), rendered.image, [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise OSError(f"cannot write {path}")
        has = has_landmarks(rendered, config)
        landmarks = np.where(has[:, None], rendered.landmarks, -1.0)
        annotations.append(ImageAnnotation(f"{event}/{name}.jpg", rendered.boxes.astype(np.float32),
                                           landmarks.astype(np.float32), has, rendered.attributes.astype(np.int32)))
        flags.append((~rendered.landmark_visible).astype(np.float32))
        per_image.append((event, name, rendered))
    return annotations, flags, per_image


def _statistics(per_image: list, config: SynthConfig) -> dict:
    heights = np.concatenate([r.boxes[:, 3] - r.boxes[:, 1] for _, _, r in per_image]) if per_image else np.zeros(0)
    counts = np.array([len(r.boxes) for _, _, r in per_image])
    settings = {s: int(sum(difficulty_masks(r, config)[s].sum() for _, _, r in per_image)) for s in SETTINGS}
    landmarks = int(sum(has_landmarks(r, config).sum() for _, _, r in per_image))
    return {
        "images": len(per_image), "faces": int(counts.sum()),
        "faces_per_image": {"min": int(counts.min()), "median": float(np.median(counts)), "max": int(counts.max())},
        "face_height_px": {q: float(np.percentile(heights, p)) for q, p in
                           (("min", 0), ("p10", 10), ("median", 50), ("p90", 90), ("max", 100))} if len(heights) else {},
        "faces_with_landmarks": landmarks,
        "counted": settings,
        "occluded_over_30pct": int(sum((r.attributes[:, 4] == 2).sum() for _, _, r in per_image)),
    }


def _write_evaluation_tree(root: Path, split: str, count: int, config: SynthConfig) -> list:
    """The images of an evaluation split under `root` in the validation layout the evaluator reads
    (WIDER_val/images, wider_face_split/wider_face_val_bbx_gt.txt, ground_truth/*.mat); the
    held-out test split is such a tree of its own under HELDOUT_TEST_DIR."""
    annotations, _, per_image = _render_split(root, split, count, config)
    split_dir = root / "wider_face_split"
    split_dir.mkdir(parents=True, exist_ok=True)
    write_wider_bbx_gt(split_dir / "wider_face_val_bbx_gt.txt", annotations)
    events, kept = [], {s: [] for s in SETTINGS}
    for event, _kind in config.events:
        images = [(name, r) for e, name, r in per_image if e == event]
        if not images:
            continue
        events.append((event, [(name, np.column_stack([r.boxes[:, :2], r.boxes[:, 2:] - r.boxes[:, :2]]),
                                {key: r.attributes[:, k] for k, key in enumerate(
                                    ("blur", "expression", "illumination", "invalid", "occlusion", "pose"))})
                               for name, r in images]))
        masks = [difficulty_masks(r, config) for _, r in images]
        for setting in SETTINGS:
            kept[setting].append([np.flatnonzero(m[setting]) for m in masks])
    write_ground_truth(root / "ground_truth", events, kept)
    return per_image


def generate_synthetic_dataset(root: str | Path, config: SynthConfig = SynthConfig()) -> dict:
    """Write the dataset into `root` (which must not exist or be empty); returns the manifest."""
    root = Path(root)
    start = time.perf_counter()
    train_annotations, train_flags, train_images = _render_split(root, "train", config.train_images, config)
    (root / "train").mkdir(parents=True, exist_ok=True)
    write_retinaface_labels(root / "train" / "label.txt", train_annotations, train_flags)
    split_dir = root / "wider_face_split"
    split_dir.mkdir(parents=True, exist_ok=True)
    write_wider_bbx_gt(split_dir / "wider_face_train_bbx_gt.txt", train_annotations)

    val_images = _write_evaluation_tree(root, "val", config.val_images, config)
    test_images = []
    if config.test_images:
        test_images = _write_evaluation_tree(root / HELDOUT_TEST_DIR, "test", config.test_images, config)

    manifest = {
        "dataset": "synthetic (procedurally drawn faces; not WIDER FACE)",
        "generator_version": GENERATOR_VERSION,
        "fingerprint": config.fingerprint(),
        "config": dataclasses.asdict(config),
        "statistics": {"train": _statistics(train_images, config), "val": _statistics(val_images, config),
                       **({"test": _statistics(test_images, config)} if test_images else {})},
        "generation_seconds": round(time.perf_counter() - start, 2),
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(root: str | Path) -> dict | None:
    path = Path(root) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


# What a synthetic dataset consists of under its root. Anything else there (e.g. other
# synthetic sets in sub-folders) is left alone.
OWNED_ENTRIES = ("WIDER_train", "WIDER_val", "train", "wider_face_split", "ground_truth", HELDOUT_TEST_DIR)
_INCOMPLETE = ".synth_incomplete"


def ensure_synthetic_dataset(root: str | Path | None = None, config: SynthConfig | None = None,
                             force: bool = False) -> Path:
    """Generate the dataset at `root` (default data/synthetic) unless it is already there with this config.

    Another config's synthetic dataset at `root` is replaced. A WIDER-format tree that
    ffcore did not write (no manifest) is never touched: that raises `FileExistsError`.
    """
    from ffcore.paths import default_synthetic_root

    root = Path(root) if root is not None else default_synthetic_root()
    config = config or SynthConfig()
    manifest = read_manifest(root)
    if manifest is not None and manifest.get("fingerprint") == config.fingerprint() and not force:
        return root
    foreign = [name for name in OWNED_ENTRIES if (root / name).exists()]
    if foreign and manifest is None and not (root / _INCOMPLETE).exists():
        raise FileExistsError(f"{root} holds {', '.join(foreign)} but no {MANIFEST}: not a synthetic dataset written "
                              f"by ffcore, so it is left alone. Choose another folder (--out) or move it away.")
    # Generate beside the target, then swap our entries in; a marker file flags a swap that
    # was interrupted so the next call may finish the job.
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.parent / f".{root.name}.tmp-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        generate_synthetic_dataset(staging, config)
        root.mkdir(exist_ok=True)
        (root / _INCOMPLETE).touch()
        (root / MANIFEST).unlink(missing_ok=True)
        for name in OWNED_ENTRIES:
            if (root / name).exists():
                shutil.rmtree(root / name)
            if (staging / name).exists():   # the test split is written only when the config asks for one
                (staging / name).rename(root / name)
        (staging / MANIFEST).rename(root / MANIFEST)
        (root / _INCOMPLETE).unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("synthetic dataset written to %s (fingerprint %s)", root, config.fingerprint())
    return root
