"""Where the pieces of a WIDER FACE tree are, found from one root folder.

Expected under the root (default `ffcore.paths.default_widerface_root()`, i.e. data/widerface):

    WIDER_train/images/<event>/<name>.jpg      training images        (WIDER_train.zip)
    WIDER_val/images/<event>/<name>.jpg        validation images      (WIDER_val.zip)
    wider_face_split/wider_face_{train,val}_bbx_gt.txt   official lists (wider_face_split.zip)
    train/label.txt                            RetinaFace training labels with landmarks
    wider_face_val.mat, wider_{easy,medium,hard}_val.mat  evaluation ground truth, in the root,
                                               ground_truth/ or eval_tools/ground_truth/

    heldout_test/                              a labelled held-out test split (synthetic data only;
                                               WIDER FACE publishes no test labels), laid out as an
                                               evaluation tree of its own: WIDER_val/images,
                                               wider_face_split/wider_face_val_bbx_gt.txt, ground_truth/

`WiderFaceLayout.find(root, need=("train",))` checks what a task needs and raises one
`LayoutError` that lists every expected piece, where it was looked for and whether it was found.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ffcore.data.ground_truth import ALL_FACES_FILE, SETTINGS, setting_file

NEEDS = ("train", "train_landmarks", "val", "val_gt")
HELDOUT_TEST_DIR = "heldout_test"


class LayoutError(FileNotFoundError):
    """A WIDER FACE tree that lacks what a task needs."""


def _first_dir(candidates: list[Path]) -> Path | None:
    return next((c for c in candidates if c.is_dir()), None)


def _first_file(candidates: list[Path]) -> Path | None:
    return next((c for c in candidates if c.is_file()), None)


@dataclass(frozen=True)
class WiderFaceLayout:
    root: Path
    train_images: Path | None
    val_images: Path | None
    retinaface_train_labels: Path | None
    train_bbx_gt: Path | None
    val_bbx_gt: Path | None
    ground_truth_dir: Path | None
    heldout_test: Path | None = None   # root of the labelled test split's evaluation tree, when complete

    # -- discovery -------------------------------------------------------------------------
    @staticmethod
    def _candidates(root: Path) -> dict[str, list[Path]]:
        return {
            "train_images": [root / "WIDER_train" / "images", root / "train" / "images"],
            "val_images": [root / "WIDER_val" / "images", root / "val" / "images"],
            "retinaface_train_labels": [root / "train" / "label.txt", root / "retinaface_gt_v1.1" / "train" / "label.txt",
                                        root / "WIDER_train" / "label.txt"],
            "train_bbx_gt": [root / "wider_face_split" / "wider_face_train_bbx_gt.txt"],
            "val_bbx_gt": [root / "wider_face_split" / "wider_face_val_bbx_gt.txt"],
            "ground_truth_dir": [root, root / "ground_truth", root / "eval_tools" / "ground_truth"],
        }

    @classmethod
    def discover(cls, root: str | Path | None = None) -> "WiderFaceLayout":
        """Whatever is present under root (missing pieces are None); never raises."""
        from ffcore.paths import default_widerface_root

        root = Path(root) if root is not None else default_widerface_root()
        c = cls._candidates(root)
        labels = _first_file(c["retinaface_train_labels"])
        train_images = _first_dir(c["train_images"])
        # RetinaFace's label.txt paths are relative to the images folder next to it when there is one.
        if labels is not None and (labels.parent / "images").is_dir():
            train_images = labels.parent / "images"
        gt_dir = next((d for d in c["ground_truth_dir"] if (d / ALL_FACES_FILE).is_file()), None)
        test = root / HELDOUT_TEST_DIR
        complete_test = (test / "WIDER_val" / "images").is_dir() and all(
            (test / "ground_truth" / name).is_file() for name in (ALL_FACES_FILE, *map(setting_file, SETTINGS)))
        return cls(root=root, train_images=train_images, val_images=_first_dir(c["val_images"]),
                   retinaface_train_labels=labels, train_bbx_gt=_first_file(c["train_bbx_gt"]),
                   val_bbx_gt=_first_file(c["val_bbx_gt"]), ground_truth_dir=gt_dir,
                   heldout_test=test if complete_test else None)

    @classmethod
    def find(cls, root: str | Path | None = None, need: tuple[str, ...] = ("train",)) -> "WiderFaceLayout":
        """Discover and check that everything in `need` (from NEEDS) is present; else one LayoutError."""
        unknown = set(need) - set(NEEDS)
        if unknown:
            raise ValueError(f"unknown need {sorted(unknown)}; choose from {NEEDS}")
        layout = cls.discover(root)
        problems = layout.missing(need)
        if problems:
            raise LayoutError(layout._report(need))
        return layout

    # -- checks ----------------------------------------------------------------------------
    def _requirements(self) -> list[tuple[str, str, bool, list[Path], str]]:
        """(need, what, present, looked in, where it comes from) for every piece."""
        c = self._candidates(self.root)
        any_train_labels = self.retinaface_train_labels is not None or self.train_bbx_gt is not None
        any_val_list = self.ground_truth_dir is not None or self.val_bbx_gt is not None
        gt_files = [d / ALL_FACES_FILE for d in c["ground_truth_dir"]]
        settings_present = self.ground_truth_dir is not None and all(
            (self.ground_truth_dir / setting_file(s)).is_file() for s in SETTINGS)
        return [
            ("train", "training images WIDER_train/images/<event>/<name>.jpg", self.train_images is not None,
             c["train_images"], "WIDER_train.zip from the WIDER FACE site"),
            ("train", "training annotations: train/label.txt (RetinaFace, with landmarks) or "
                      "wider_face_split/wider_face_train_bbx_gt.txt", any_train_labels,
             c["retinaface_train_labels"] + c["train_bbx_gt"],
             "retinaface_gt_v1.1.zip (Pytorch_Retinaface README) or wider_face_split.zip"),
            ("train_landmarks", "RetinaFace training labels train/label.txt", self.retinaface_train_labels is not None,
             c["retinaface_train_labels"], "retinaface_gt_v1.1.zip (Pytorch_Retinaface README)"),
            ("train_landmarks", "training images WIDER_train/images/<event>/<name>.jpg", self.train_images is not None,
             c["train_images"], "WIDER_train.zip from the WIDER FACE site"),
            ("val", "validation images WIDER_val/images/<event>/<name>.jpg", self.val_images is not None,
             c["val_images"], "WIDER_val.zip from the WIDER FACE site"),
            ("val", "validation list: wider_face_val.mat or wider_face_split/wider_face_val_bbx_gt.txt",
             any_val_list, gt_files + c["val_bbx_gt"], "eval_tools.zip or wider_face_split.zip"),
            ("val_gt", "evaluation ground truth wider_face_val.mat + wider_{easy,medium,hard}_val.mat",
             settings_present, gt_files, "eval_tools.zip (eval_tools/ground_truth/)"),
        ]

    def missing(self, need: tuple[str, ...]) -> list[str]:
        return [what for n, what, present, _, _ in self._requirements() if n in need and not present]

    def _report(self, need: tuple[str, ...]) -> str:
        lines = [f"The WIDER FACE tree at {self.root} lacks what {', '.join(need)} needs:"]
        for n, what, present, looked, source in self._requirements():
            if n not in need:
                continue
            lines.append(f"  [{'found' if present else 'MISSING'}] {what}")
            if not present:
                lines.append(f"      looked in: {', '.join(str(p) for p in looked)}")
                lines.append(f"      comes from: {source}")
        lines.append("Point --data at the folder holding these (layout in data/README.md), or use the "
                     "synthetic dataset (`ffcore synth`, written to data/synthetic).")
        return "\n".join(lines)

    # -- builders --------------------------------------------------------------------------
    def train_dataset(self, transform=None, seed: int = 0, prefer_landmarks: bool = True, check_images: bool = True):
        """The training dataset: RetinaFace label.txt when present (and preferred), else the bbx_gt list."""
        from ffcore.data.datasets import RetinaFaceLabelDataset, WiderBBoxDataset

        if self.missing(("train",)):
            raise LayoutError(self._report(("train",)))
        if self.retinaface_train_labels is not None and (prefer_landmarks or self.train_bbx_gt is None):
            return RetinaFaceLabelDataset(self.retinaface_train_labels, self.train_images, transform, seed, check_images)
        return WiderBBoxDataset(self.train_bbx_gt, self.train_images, transform, seed, check_images)

    def validation_index(self, check_images: bool = True):
        from ffcore.data.validation import ValidationIndex

        if self.missing(("val",)):
            raise LayoutError(self._report(("val",)))
        return ValidationIndex.from_layout(self, check_images=check_images)
