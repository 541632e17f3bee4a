"""Checkpoint files (ffcore.checkpoint): written atomically, read back, errors name the file."""

import pytest
import torch

from ffcore.checkpoint import CheckpointError, load_checkpoint_file, save_checkpoint


def test_checkpoint_is_written_atomically_and_read_back(tmp_path):
    path = save_checkpoint(tmp_path / "run" / "last.pt", {"model_name": "x", "state_dict": {"w": torch.ones(2)}})
    loaded = load_checkpoint_file(path)
    assert loaded["format"] == "ffcore-checkpoint" and loaded["model_name"] == "x"
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    with pytest.raises(CheckpointError, match="nothing.pt"):
        load_checkpoint_file(tmp_path / "nothing.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint_file(tmp_path / "bad.pt")
