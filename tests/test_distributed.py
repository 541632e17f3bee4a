"""DDP: two gloo processes on CPU end with identical weights; only rank 0 writes."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from test_engine import tiny_config, write_tiny_wider_tree


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, root: str, out: str, dump_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank)})
    from ffcore.engine.train import train

    result = train(tiny_config(Path(root), Path(out), device="cpu", epochs=2, max_steps_per_epoch=1))
    torch.save({"state_dict": result.model.state_dict(), "history": result.history,
                "initialised_after": dist.is_initialized()}, Path(dump_dir) / f"rank{rank}.pt")


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="gloo backend not available")
def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    root = write_tiny_wider_tree(tmp_path / "data", images=10)
    out, dumps = tmp_path / "run", tmp_path / "dumps"
    dumps.mkdir()
    mp.start_processes(_worker, args=(2, _free_port(), str(root), str(out), str(dumps)), nprocs=2,
                       join=True, start_method="spawn")
    rank0 = torch.load(dumps / "rank0.pt", weights_only=False)
    rank1 = torch.load(dumps / "rank1.pt", weights_only=False)
    assert rank0["state_dict"].keys() == rank1["state_dict"].keys()
    for key, value in rank0["state_dict"].items():
        assert torch.equal(value, rank1["state_dict"][key]), f"replicas differ at {key}"
    assert not rank0["initialised_after"], "the process group should be torn down after train()"
    # both ranks log the same, all-reduced losses; rank 0 alone wrote the run folder
    assert [r["loss"] for r in rank0["history"]] == [r["loss"] for r in rank1["history"]]
    checkpoint = torch.load(out / "last.pt", weights_only=False)
    assert checkpoint["world_size"] == 2 and checkpoint["epoch"] == 2
    for key, value in rank0["state_dict"].items():
        assert torch.equal(checkpoint["state_dict"][key], value)
    # the weights moved away from their initialisation (training happened)
    from ffcore.engine.train import build_model
    initial = build_model("retinaface_mnet025", {}, True, seed=0).state_dict()
    assert any(not torch.equal(initial[k], v) for k, v in rank0["state_dict"].items() if v.is_floating_point())
