"""Training datasets over the two WIDER FACE annotation formats, and the batch collate.

A sample is `(image, targets)`: with a transform (normally `transforms.TrainTransform`),
image is float32 [3, S, S] (BGR minus the mean) and targets float32 [n, 15] = normalised
x1, y1, x2, y2, ten normalised landmark coordinates, label (1, or -1 without landmarks).
Without a transform the sample is the raw BGR uint8 image and pixel targets.

Randomness: each sample draws from `np.random.default_rng([seed, epoch, index])`, so a
sample is reproducible (and identical whether loaded in a worker or not). Call
`set_epoch(epoch)` before each epoch to get fresh augmentations.

An image that is missing or cannot be decoded when a sample is loaded raises
`UnreadableImageError` naming the image and the annotation line that lists it. With
`report_unreadable=True` the sample is an `UnreadableImage` record instead, and
`collate_reporting_unreadable` puts those records beside the batch: the trainer (a
different process from the data-loader workers) then decides to stop or to skip and count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ffcore.data.annotations import ImageAnnotation, ParseReport, read_retinaface_labels, read_wider_bbx_gt
from ffcore.preprocess import ImageReadError, read_image

Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


class MissingImagesError(FileNotFoundError):
    """Images listed in an annotation file that are not on disk."""


class UnreadableImageError(ImageReadError):
    """A training image that is missing or cannot be decoded when its sample is loaded."""


@dataclass(frozen=True)
class UnreadableImage:
    """Stands for a sample whose image could not be read (`report_unreadable=True`)."""

    index: int
    path: str
    listed_at: str | None      # "annotation file:line"
    reason: str

    def describe(self) -> str:
        listed = f" (listed at {self.listed_at})" if self.listed_at else ""
        return f"{self.path}{listed}: {self.reason}"


def check_images_exist(images_dir: Path, relative_paths: list[str], listed_in: Path) -> None:
    """Raise `MissingImagesError` naming the missing images (first ten) and the list they came from."""
    missing = [p for p in relative_paths if not (images_dir / p).is_file()]
    if missing:
        shown = "\n  ".join(str(images_dir / p) for p in missing[:10])
        more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise MissingImagesError(
            f"{len(missing)} of {len(relative_paths)} images listed in {listed_in} are missing, e.g.\n  {shown}{more}\n"
            f"Check that the images folder ({images_dir}) matches the annotation file.")


class _AnnotatedImages(torch.utils.data.Dataset):
    def __init__(self, annotations: list[ImageAnnotation], report: ParseReport, images_dir: str | Path,
                 transform: Transform | None, seed: int, check_images: bool):
        self.annotations = annotations
        self.report = report
        self.images_dir = Path(images_dir)
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self.report_unreadable = False
        if check_images:
            check_images_exist(self.images_dir, [a.path for a in annotations], report.path)

    @property
    def dropped_boxes(self) -> int:
        return self.report.dropped_boxes

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng_for(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def __len__(self) -> int:
        return len(self.annotations)

    def image_path(self, index: int) -> Path:
        return self.images_dir / self.annotations[index].path

    def __getitem__(self, index):
        # `(epoch, index)` from an `EpochTaggedSampler`: the epoch travels with the index, so loader
        # processes that live across epochs (persistent_workers) still draw that epoch's augmentation
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        annotation = self.annotations[index]
        path = self.images_dir / annotation.path
        try:
            image = read_image(path)
        except ImageReadError as exc:
            record = UnreadableImage(int(index), str(path), annotation.source, str(exc))
            if self.report_unreadable:
                return record
            raise UnreadableImageError(f"training image unreadable: {record.describe()}") from exc
        targets = annotation.targets_pixels()
        if self.transform is None:
            return image, targets
        image, targets = self.transform(image, targets, np.random.default_rng([self.seed, int(epoch), int(index)]))
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(targets))


class EpochTaggedSampler(torch.utils.data.Sampler):
    """Yields `(epoch, index)` for the indices of `sampler`; `set_epoch` before each epoch."""

    def __init__(self, sampler: torch.utils.data.Sampler):
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        return ((self.epoch, int(index)) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class RetinaFaceLabelDataset(_AnnotatedImages):
    """WIDER FACE training set from RetinaFace's `label.txt` (boxes and five landmarks)."""

    def __init__(self, label_file: str | Path, images_dir: str | Path | None = None,
                 transform: Transform | None = None, seed: int = 0, check_images: bool = True):
        label_file = Path(label_file)
        annotations, report = read_retinaface_labels(label_file)
        images_dir = Path(images_dir) if images_dir is not None else label_file.parent / "images"
        super().__init__(annotations, report, images_dir, transform, seed, check_images)


class WiderBBoxDataset(_AnnotatedImages):
    """WIDER FACE training set from the official `wider_face_train_bbx_gt.txt` (boxes only, label -1)."""

    def __init__(self, bbx_gt_file: str | Path, images_dir: str | Path,
                 transform: Transform | None = None, seed: int = 0, check_images: bool = True):
        annotations, report = read_wider_bbx_gt(bbx_gt_file)
        super().__init__(annotations, report, images_dir, transform, seed, check_images)


def detection_collate(batch):
    """Stack the images into [B, 3, S, S]; keep the targets as a list of [n_i, 15] tensors."""
    images, targets = zip(*batch)
    return stack_images([torch.as_tensor(image) for image in images]), [torch.as_tensor(t) for t in targets]


def stack_images(images: list[torch.Tensor]) -> torch.Tensor:
    """[B, ...] from B same-shaped tensors, the same values as `torch.stack`, without its costs in a loader:
    in a loader process the batch is written straight into shared memory (as torch's `default_collate`
    does), so handing it to the trainer copies nothing; in the training process it goes through
    numpy, whose allocator maps a batch of 32 images of 640 px with huge pages: a third of the time
    `torch.stack` spends on the page faults of fresh memory (benchmarks/bench_dataloader.py --stages)."""
    if torch.utils.data.get_worker_info() is not None:
        return torch.utils.data.default_collate(images)
    return torch.from_numpy(np.stack([image.numpy() for image in images]))


def collate_reporting_unreadable(batch):
    """`detection_collate` of the readable samples, plus the `UnreadableImage` records of the others.

    Returns (images or None when no sample was readable, targets, unreadable records).
    """
    unreadable = [sample for sample in batch if isinstance(sample, UnreadableImage)]
    readable = [sample for sample in batch if not isinstance(sample, UnreadableImage)]
    if not readable:
        return None, [], unreadable
    images, targets = detection_collate(readable)
    return images, targets, unreadable
