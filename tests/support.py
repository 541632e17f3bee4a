"""Helpers shared by the test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import torch

from ffcore.paths import shared_dir


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def vectors(name: str) -> dict:
    """The reference test vectors of model `name` (ARCHITECTURES.md), from the shared folder."""
    return torch.load(shared_dir() / "reference" / f"{name}_vectors.pt", weights_only=True)
