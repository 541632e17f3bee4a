"""The validation images in evaluation order, with the (event, name) each prediction file needs.

Built from the evaluation ground truth `wider_face_val.mat` (the list the evaluator reads)
or, failing that, from `wider_face_split/wider_face_val_bbx_gt.txt`. A prediction for an
entry goes to `<out>/<event>/<name>.txt` (see `prediction_path`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ffcore.data.ground_truth import ALL_FACES_FILE


@dataclass(frozen=True)
class ValidationEntry:
    image_path: Path
    event: str
    name: str            # image name without ".jpg"


class ValidationIndex:
    def __init__(self, entries: list[ValidationEntry], source: Path):
        self.entries = list(entries)
        self.source = Path(source)

    @classmethod
    def from_ground_truth(cls, gt_dir: str | Path, images_dir: str | Path) -> "ValidationIndex":
        """From the folder holding `wider_face_val.mat` (read by the evaluator's own loader)."""
        from ffcore.data.ground_truth import load_ground_truth

        images_dir = Path(images_dir)
        truth = load_ground_truth(gt_dir, settings=())
        entries = [ValidationEntry(images_dir / event / f"{name}.jpg", event, name)
                   for event, name in zip(truth.events, truth.names)]
        return cls(entries, Path(gt_dir) / ALL_FACES_FILE)

    @classmethod
    def from_bbx_gt(cls, list_path: str | Path, images_dir: str | Path) -> "ValidationIndex":
        from ffcore.data.annotations import read_wider_bbx_gt

        images_dir = Path(images_dir)
        annotations, _ = read_wider_bbx_gt(list_path)
        entries = []
        for annotation in annotations:
            relative = Path(annotation.path)
            entries.append(ValidationEntry(images_dir / relative, relative.parent.as_posix(), relative.stem))
        return cls(entries, Path(list_path))

    @classmethod
    def from_layout(cls, layout, check_images: bool = True) -> "ValidationIndex":
        """From a `WiderFaceLayout`: the .mat list when present, else the bbx_gt list."""
        if layout.ground_truth_dir is not None:
            index = cls.from_ground_truth(layout.ground_truth_dir, layout.val_images)
        else:
            index = cls.from_bbx_gt(layout.val_bbx_gt, layout.val_images)
        if check_images:
            index.verify_images()
        return index

    def verify_images(self) -> None:
        from ffcore.data.datasets import MissingImagesError

        missing = [e.image_path for e in self.entries if not e.image_path.is_file()]
        if missing:
            shown = "\n  ".join(str(p) for p in missing[:10])
            more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise MissingImagesError(f"{len(missing)} of {len(self.entries)} validation images listed in "
                                     f"{self.source} are missing, e.g.\n  {shown}{more}")

    @property
    def events(self) -> list[str]:
        return list(dict.fromkeys(e.event for e in self.entries))

    @staticmethod
    def prediction_path(out_dir: str | Path, entry: ValidationEntry) -> Path:
        return Path(out_dir) / entry.event / f"{entry.name}.txt"

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[ValidationEntry]:
        return iter(self.entries)

    def __getitem__(self, index: int) -> ValidationEntry:
        return self.entries[index]
