"""Helpers shared by the test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import torch

from ffcore.paths import shared_dir


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def vectors(name: str) -> dict:
    """The reference test vectors of model `name` (ARCHITECTURES.md), from the shared folder."""
    return torch.load(shared_dir() / "reference" / f"{name}_vectors.pt", weights_only=True)


def corrupt_interrupted_run(study, run: str) -> None:
    """Leave `run` as a training interrupted after its first epoch whose last.pt is corrupt (it names
    epoch 1 and holds no weights): its next attempt resumes from that file and fails."""
    from ffcore.checkpoint import save_checkpoint
    from ffcore.study.plan import planned_run
    from ffcore.study.run_state import start_record
    from ffcore.study.training import expected_fingerprint

    job = planned_run(study.profile, run)
    run_dir = study.run_dir(run)
    run_dir.mkdir(parents=True, exist_ok=True)
    start_record(run_dir, expected_fingerprint(study, job), job.epochs, "trained", 0, None)
    save_checkpoint(run_dir / "last.pt", {"epoch": 1, "history": [{"epoch": 1, "wall_time_s": 1.0}]})
