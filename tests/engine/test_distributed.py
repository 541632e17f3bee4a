"""DDP: two gloo processes on CPU train what one process trains at the same global batch.

Two processes with batch 2 each against one process with batch 4, on the same four images,
two optimisation steps (one per epoch, each covering the whole set). What DDP is responsible
for is then checked: the sampler gives the ranks disjoint halves of the set, the gradients are
averaged, the losses are reported averaged, only rank 0 writes, the process group is torn
down. Two things would differ legitimately, and are held fixed so the comparison can be exact
up to the order of float sums:

- batch norm: without SyncBatchNorm (CUDA only) each rank normalises with its own batch's
  statistics; both runs here normalise with the running statistics instead;
- the loss normalisation: MultiBoxLoss divides by the positives of the batch it sees, so a
  rank's share of the global loss is exact only when both halves hold as many positives.
  Every image has the same faces at the same places (backgrounds differ) and the evaluation
  letterbox replaces the random crop, so every image matches the same priors.

Tolerance: max |DDP - single| <= 1e-6 on every weight after two SGD steps, while the same steps
move the weights by more than 1e-3 (a wrong split or summed gradients would show at that scale).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from support import tiny_config

TOLERANCE = 1e-6
IMAGES = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_same_faces_tree(root: Path, images: int = IMAGES, size: int = 96) -> Path:
    """A RetinaFace-format root whose images hold the same two faces on different backgrounds."""
    import cv2

    rng = np.random.default_rng(0)
    image_dir = root / "train" / "images" / "0--Same"
    image_dir.mkdir(parents=True, exist_ok=True)
    faces = [(10.0, 12.0, 30.0), (50.0, 40.0, 36.0)]     # x, y, side
    lines = []
    for i in range(images):
        image = rng.uniform(60, 200, size=(size, size, 3)).astype(np.uint8)
        lines.append(f"# 0--Same/{i}.png")
        for x, y, s in faces:
            colour = tuple(int(c) for c in rng.integers(20, 240, 3))
            cv2.rectangle(image, (int(x), int(y)), (int(x + s), int(y + s)), colour, -1)
            points = [x + 0.3 * s, y + 0.4 * s, x + 0.7 * s, y + 0.4 * s, x + 0.5 * s, y + 0.6 * s,
                      x + 0.35 * s, y + 0.8 * s, x + 0.65 * s, y + 0.8 * s]
            triples = [v for j in range(5) for v in (points[2 * j], points[2 * j + 1], 1.0)]
            lines.append(" ".join(f"{v:.1f}" for v in [x, y, s, s, *triples, 0.9]))
        cv2.imwrite(str(image_dir / f"{i}.png"), image)     # lossless: the pixels are the ones drawn
    (root / "train" / "label.txt").write_text("\n".join(lines) + "\n")
    return root


def _hold_fixed_what_may_differ() -> None:
    """Batch norm with running statistics, and no random crop (see the module docstring)."""
    import torch.nn.functional as F
    from torch import nn

    from ffcore.data.transforms import EvalTransform, EvalTransformConfig
    from ffcore.engine import trainer

    def running_statistics(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    def letterboxed_dataset(config, root):
        from ffcore.data.layout import WiderFaceLayout

        return WiderFaceLayout.find(root, need=("train",)).train_dataset(
            transform=EvalTransform(EvalTransformConfig(image_size=config.image_size)), seed=config.seed)

    nn.modules.batchnorm._BatchNorm.forward = running_statistics
    trainer.build_train_dataset = letterboxed_dataset


def _worker(rank: int, world_size: int, port: int, root: str, out: str, dump_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank)})
    _hold_fixed_what_may_differ()
    from ffcore.engine.supervised import train

    config = tiny_config(Path(root), Path(out), device="cpu", epochs=2, max_steps_per_epoch=None,
                         batch_size=IMAGES // world_size, optimizer="sgd", lr=0.05, momentum=0.9,
                         weight_decay=0.0, schedule="constant", pretrained_backbone=False)
    result = train(config)
    torch.save({"state_dict": result.model.state_dict(), "history": result.history,
                "initialised_after": dist.is_initialized()}, Path(dump_dir) / f"world{world_size}_rank{rank}.pt")


def _run(world_size: int, root: Path, out: Path, dumps: Path) -> list[dict]:
    mp.start_processes(_worker, args=(world_size, _free_port(), str(root), str(out), str(dumps)),
                       nprocs=world_size, join=True, start_method="spawn")
    return [torch.load(dumps / f"world{world_size}_rank{r}.pt", weights_only=False) for r in range(world_size)]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="gloo backend not available")
def test_two_gloo_processes_train_what_one_process_trains_at_the_same_global_batch(tmp_path):
    root = write_same_faces_tree(tmp_path / "data")
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    rank0, rank1 = _run(2, root, tmp_path / "ddp", dumps)
    (single,) = _run(1, root, tmp_path / "single", dumps)

    from ffcore.engine.supervised import build_model

    initial = build_model("retinaface_mnet025", {}, False, seed=0).state_dict()
    weights = [k for k, v in single["state_dict"].items() if v.is_floating_point() and "running" not in k]
    moved = max(float((single["state_dict"][k] - initial[k]).abs().max()) for k in weights)
    assert moved > 1e-3, f"the two steps barely moved the weights ({moved:.2g}): nothing was compared"
    for key in weights:
        difference = float((rank0["state_dict"][key] - single["state_dict"][key]).abs().max())
        assert difference <= TOLERANCE, f"{key}: DDP and one process differ by {difference:.3g}"
    for ddp, one in zip(rank0["history"], single["history"]):
        assert ddp["loss"] == pytest.approx(one["loss"], rel=1e-5)
    assert len(rank0["history"]) == len(single["history"]) == 2

    # rank 1 holds the same replica, the group is gone, rank 0 alone wrote the run folder
    for key, value in rank0["state_dict"].items():
        assert torch.equal(value, rank1["state_dict"][key]), f"replicas differ at {key}"
    assert not rank0["initialised_after"], "the process group should be torn down after train()"
    checkpoint = torch.load(tmp_path / "ddp" / "last.pt", weights_only=False)
    assert checkpoint["world_size"] == 2 and checkpoint["epoch"] == 2
