"""Where things live on disk. Defaults only; every command takes an explicit path too."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"   # the study notebooks, NN_*.ipynb

def _origin_checkout() -> Path | None:
    """The local repository this checkout was cloned from, if any (read from .git/config, no git call)."""
    config = REPO_ROOT / ".git" / "config"
    if not config.is_file():
        return None
    for line in config.read_text(errors="replace").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "url":
            candidate = Path(value.strip())
            if candidate.is_absolute() and candidate.is_dir():
                return candidate.resolve()
    return None


# The read-only material that sits beside the repository (reference vectors, weights,
# WIDER FACE validation ground truth). FFCORE_SHARED overrides the location; a clone made
# elsewhere (e.g. a scratch CI checkout) finds it beside the repository it was cloned from.
def shared_dir() -> Path:
    if "FFCORE_SHARED" in os.environ:
        return Path(os.environ["FFCORE_SHARED"]).resolve()
    beside = REPO_ROOT.parent / "shared"
    if beside.is_dir():
        return beside.resolve()
    origin = _origin_checkout()
    if origin is not None and (origin.parent / "shared").is_dir():
        return (origin.parent / "shared").resolve()
    return beside.resolve()


def data_dir() -> Path:
    return Path(os.environ.get("FFCORE_DATA", REPO_ROOT / "data")).resolve()


def results_dir() -> Path:
    # FFCORE_RESULTS / FFCORE_FIGURES: a run that must not touch the repository's results (tests)
    return Path(os.environ.get("FFCORE_RESULTS", REPO_ROOT / "results")).resolve()


def figures_dir() -> Path:
    return Path(os.environ.get("FFCORE_FIGURES", REPO_ROOT / "thesis_figures")).resolve()


def weights_dir() -> Path:
    return REPO_ROOT / "weights"


def default_widerface_root() -> Path:
    return data_dir() / "widerface"


def default_synthetic_root() -> Path:
    return data_dir() / "synthetic"


IMAGENET_BACKBONE_FILE = "mobilenetV1X0.25_pretrain.tar"


def find_imagenet_backbone() -> Path | None:
    """The ImageNet MobileNet-0.25 file: `weights/` first, then the shared folder."""
    for candidate in (weights_dir() / IMAGENET_BACKBONE_FILE, shared_dir() / "weights" / IMAGENET_BACKBONE_FILE):
        if candidate.is_file():
            return candidate
    return None
