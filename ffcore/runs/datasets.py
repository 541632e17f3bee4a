"""The study's dataset: generated on first use (synthetic profiles) or checked (WIDER FACE)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ffcore.runs.profiles import RunProfile


class DatasetMissingError(FileNotFoundError):
    """The profile's dataset is not where it should be; the message says what to do."""


WIDERFACE_HELP = ("Put WIDER FACE under data/widerface/ as described in data/README.md (training images with "
                  "RetinaFace's label.txt, WIDER_val/images and the evaluation .mat files), or pass "
                  "--data / data_root=<folder>. Without WIDER FACE, use --profile smoke or --profile synthetic.")


# training (with landmarks preferred but not required), validation images and the evaluation .mat files
FULL_NEEDS = ("train", "val", "val_gt")


def check_dataset(profile: RunProfile, data_root: Path) -> None:
    """Raise `DatasetMissingError` (with what to do) when a real dataset is missing or incomplete.

    Synthetic datasets pass: they are generated on first use."""
    if profile.is_synthetic:
        return
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise DatasetMissingError(f"WIDER FACE not found: {data_root} does not exist. {WIDERFACE_HELP}")
    from ffcore.data.layout import LayoutError, WiderFaceLayout

    try:
        WiderFaceLayout.find(data_root, need=FULL_NEEDS)
    except LayoutError as exc:
        raise DatasetMissingError(f"WIDER FACE at {data_root} is incomplete.\n{exc}\n{WIDERFACE_HELP}") from exc


def prepare_dataset(profile: RunProfile, data_root: Path) -> Path:
    """Make sure the profile's dataset at `data_root` is usable: generate the synthetic one if absent."""
    if profile.is_synthetic:
        from ffcore.data.synth import SynthConfig, ensure_synthetic_dataset

        low, high = profile.synthetic_long_side
        config = SynthConfig(train_images=profile.synthetic_train_images, val_images=profile.synthetic_val_images,
                             test_images=profile.synthetic_test_images or 0, test_seed=profile.test_split_seed,
                             seed=profile.seed, min_long_side=low, max_long_side=high)
        ensure_synthetic_dataset(data_root, config)
    else:
        check_dataset(profile, data_root)
    return data_root


@dataclass(frozen=True)
class EvaluationSplit:
    """The images every headline AP and verdict of a study is read from."""

    name: str      # "test" (held out) or "validation"
    root: Path     # a WIDER-format evaluation tree (WIDER_val/images, its list and ground truth)
    note: str      # what a caption says about it

    def images(self, count: int) -> str:
        return f"{count} {self.name} images"


def evaluation_split(study) -> EvaluationSplit:
    """`study` (a `ffcore.runs.context.Study`, which imports this module): the held-out test split when the dataset has one (the synthetic generator writes it from its
    own image stream, and no recipe was tuned on it), else the validation split.

    The one place the study chooses: every AP table, interval and verdict evaluates here, while
    training's validation pass and model selection keep the validation split. WIDER FACE
    publishes no test labels, so there the validation split is also the evaluation split, and the
    note says so."""
    from ffcore.data.layout import WiderFaceLayout

    layout = WiderFaceLayout.discover(study.data_root)
    if layout.heldout_test is not None:
        return EvaluationSplit("test", layout.heldout_test,
                               "held-out test split (generated from its own seed, never used for tuning or model "
                               "selection)")
    if study.profile.is_synthetic and study.profile.synthetic_test_images:
        # a tree the study did not generate (prepare_data=False, another folder): evaluate on its
        # validation split, and say so in every caption rather than stop
        import warnings

        warnings.warn(f"{study.data_root} has no complete held-out test split although the profile "
                      f"{study.profile.name!r} asks for {study.profile.synthetic_test_images} test images; "
                      "APs are read from the validation split", stacklevel=2)
        return EvaluationSplit("validation", study.data_root,
                               f"validation split ({study.data_root.name} has no held-out test split although the "
                               f"profile asks for one: regenerate the dataset to evaluate on it)")
    why = ("WIDER FACE publishes no test labels, so" if not study.profile.is_synthetic
           else "this dataset has no held-out test split, so")
    return EvaluationSplit("validation", study.data_root,
                           f"validation split ({why} the split used for model selection is also the evaluation split)")
