"""Helpers shared by the test modules (importable from every test folder: pyproject.toml puts tests/ on
pytest's `pythonpath`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ffcore.paths import shared_dir


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def vectors(name: str) -> dict:
    """The reference test vectors of model `name` (ARCHITECTURES.md), from the shared folder."""
    return torch.load(shared_dir() / "reference" / f"{name}_vectors.pt", weights_only=True)


def write_tiny_wider_tree(root: Path, images: int = 12, size: int = 96, seed: int = 0) -> Path:
    """A WIDER-format root (train/label.txt + train/images) of flat-coloured 'faces' on noise."""
    import cv2

    rng = np.random.default_rng(seed)
    image_dir = root / "train" / "images" / "0--Tiny"
    image_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(images):
        image = rng.uniform(60, 200, size=(size, size, 3)).astype(np.uint8)
        lines.append(f"# 0--Tiny/{i}.jpg")
        for _ in range(int(rng.integers(1, 4))):
            s = rng.uniform(size / 6, size / 2)
            x, y = rng.uniform(0, size - s, 2)
            cv2.rectangle(image, (int(x), int(y)), (int(x + s), int(y + s)), (40, 90, 180), -1)
            points = [x + 0.3 * s, y + 0.4 * s, x + 0.7 * s, y + 0.4 * s, x + 0.5 * s, y + 0.6 * s,
                      x + 0.35 * s, y + 0.8 * s, x + 0.65 * s, y + 0.8 * s]
            triples = [v for j in range(5) for v in (points[2 * j], points[2 * j + 1], 1.0)]
            lines.append(" ".join(f"{v:.1f}" for v in [x, y, s, s, *triples, 0.9]))
        cv2.imwrite(str(image_dir / f"{i}.jpg"), image)
    (root / "train" / "label.txt").write_text("\n".join(lines) + "\n")
    return root


def tiny_config(root: Path, out: Path, **overrides):
    """The smoke recipe on `root`, at 64 px, batch 4, two steps an epoch (a `TrainConfig`)."""
    from ffcore.engine import get_preset

    settings = {"image_size": 64, "batch_size": 4, "max_steps_per_epoch": 2, **overrides}
    return get_preset("smoke", data_root=str(root), out_dir=str(out), **settings)


def random_study(rng, images: int, detector_quality: float = 1.0):
    """(ground truth, predictions mapping): faces of random sizes (nested settings by size), a
    detector that finds most faces with jittered boxes plus a few scored false positives."""
    from ffcore.eval import GroundTruth

    per_image, boxes_all = [], []
    for _ in range(images):
        n = int(rng.integers(0, 7))
        xy = rng.uniform(0, 400, (n, 2))
        side = rng.uniform(6, 80, (n, 1))
        per_image.append(np.c_[xy, side, side])
    counts = [len(b) for b in per_image]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    boxes = np.concatenate(per_image) if sum(counts) else np.zeros((0, 4))
    side = boxes[:, 2]
    kept = {"easy": side >= 40, "medium": side >= 20, "hard": side >= 8}
    gt = GroundTruth(events=("0--Event",) * images, names=tuple(f"img_{i}" for i in range(images)),
                     boxes=boxes, offsets=offsets, kept=kept)
    mapping = {}
    for i, faces in enumerate(per_image):
        found = faces[rng.random(len(faces)) < 0.4 + 0.5 * detector_quality * np.clip(faces[:, 2] / 40, 0, 1)]
        jitter = found + rng.normal(0, 0.08, found.shape) * found[:, 2:3]
        true_scores = np.clip(rng.normal(0.55 + 0.3 * detector_quality, 0.15, len(found)), 0.01, 1)
        fp = np.c_[rng.uniform(0, 400, (3, 2)), rng.uniform(6, 60, (3, 2))]
        fp_scores = np.clip(rng.normal(0.4, 0.15, 3), 0.01, 1)
        mapping[gt.image_key(i)] = np.c_[np.concatenate([jitter, fp]), np.concatenate([true_scores, fp_scores])]
    return gt, mapping
def corrupt_interrupted_run(study, run: str) -> None:
    """Leave `run` as a training interrupted after its first epoch whose last.pt is corrupt (it names
    epoch 1 and holds no weights): its next attempt resumes from that file and fails."""
    from ffcore.checkpoint import save_checkpoint
    from ffcore.runs.plan import planned_run
    from ffcore.runs.records import start_record
    from ffcore.runs.training import expected_fingerprint

    job = planned_run(study.profile, run)
    run_dir = study.run_dir(run)
    run_dir.mkdir(parents=True, exist_ok=True)
    start_record(run_dir, expected_fingerprint(study, job), job.epochs, "trained", 0, None)
    save_checkpoint(run_dir / "last.pt", {"epoch": 1, "history": [{"epoch": 1, "wall_time_s": 1.0}]})
