"""A grid of dataset samples with their boxes and five landmarks (synthetic or real WIDER-format trees)."""

from __future__ import annotations

import math
from pathlib import Path

from ffcore.data.annotations import read_retinaface_labels
from ffcore.data.synth.config import MANIFEST
from ffcore.data.synth.writer import ensure_synthetic_dataset

LANDMARK_COLOURS = ("#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00")


def preview_grid(root: str | Path | None = None, n: int = 12, columns: int = 4, split: str = "train",
                 title: str | None = None):
    """A matplotlib Figure with `n` samples, their boxes (green: with landmarks, orange: without)
    and landmarks (eye L red, eye R blue, nose green, mouth L purple, mouth R orange).

    Works on any WIDER-format root; the title says "Synthetic data" only for a tree this
    generator wrote (it has the manifest), unless `title` is given."""
    import numpy as np
    from matplotlib.patches import Rectangle

    from ffcore.data.annotations import read_wider_bbx_gt
    from ffcore.report.plotting import new_figure
    from ffcore.preprocess import read_image

    root = ensure_synthetic_dataset() if root is None else Path(root)
    if split == "train":
        annotations, _ = read_retinaface_labels(root / "train" / "label.txt")
        images_dir = root / "WIDER_train" / "images"
    else:
        annotations, _ = read_wider_bbx_gt(root / "wider_face_split" / "wider_face_val_bbx_gt.txt")
        images_dir = root / "WIDER_val" / "images"
    step = max(1, len(annotations) // max(1, n))
    chosen = annotations[::step][:n]
    rows = math.ceil(len(chosen) / columns)
    width = 3.2 * columns
    fig, axes = new_figure(ncols=columns, nrows=rows, width=width, aspect=2.6 * rows / width)
    axes = np.asarray(axes).ravel()     # one Axes, or a grid of them
    for ax in axes:
        ax.axis("off")
    for ax, annotation in zip(axes, chosen):
        image = read_image(images_dir / annotation.path)[:, :, ::-1]
        ax.imshow(image)
        for box, points, has in zip(annotation.boxes, annotation.landmarks, annotation.has_landmarks):
            x1, y1, x2, y2 = box
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=0.8,
                                       edgecolor="#00e676" if has else "#ffa000"))
            if has:
                ax.scatter(points[0::2], points[1::2], s=3, c=LANDMARK_COLOURS, linewidths=0)
        ax.set_title(f"{annotation.path.split('/')[0]}  ({len(annotation)} faces)", fontsize=7)
    if title is None:
        synthetic = (root / MANIFEST).is_file()
        title = ("Synthetic data (not WIDER FACE)" if synthetic else "WIDER FACE") + ": boxes and five landmarks"
    fig.suptitle(title, fontsize=9)
    return fig
