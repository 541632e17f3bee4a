"""The study's dataset: generated on first use (synthetic profiles) or checked (WIDER FACE)."""

from __future__ import annotations

from pathlib import Path

from ffcore.study.run_profiles import RunProfile


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
                             seed=profile.seed, min_long_side=low, max_long_side=high)
        ensure_synthetic_dataset(data_root, config)
    else:
        check_dataset(profile, data_root)
    return data_root
