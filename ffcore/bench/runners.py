"""Runners: one thing to time (a model under a backend, or a peer detector), and the memory
sampler that measures what a runner needs while it is built and warmed up."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn


def process_rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class PeakRss:
    """Samples this process's RSS in a background thread; `.peak_delta` is max RSS minus RSS at entry.

    ONNX Runtime and PyTorch allocate outside Python, so tracemalloc would miss them;
    the process RSS sees both.
    """

    def __init__(self, interval_s: float = 0.002):
        self.interval_s = interval_s
        self.start = self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> "PeakRss":
        self.start = self.peak = process_rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, process_rss())
            time.sleep(self.interval_s)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, process_rss())

    @property
    def peak_delta(self) -> int:
        return self.peak - self.start


@dataclass
class Runner:
    """A timed pipeline. `forward(batch)` for detectors; `detect(image)` for peers (whole pipeline)."""

    model: str
    backend: str
    file_bytes: int | None = None
    parameters: int | None = None
    prepare: Callable[[int], None] | None = None      # called with the thread count before a setting
    forward: Callable[[torch.Tensor], tuple] | None = None
    detect: Callable[[np.ndarray], object] | None = None
    peak_rss_delta: dict[int, int] = field(default_factory=dict)   # threads -> bytes
    note: str = ""
    prior_config: object = None   # the detector's anchors (None: the default two); postprocess decodes with them

    @property
    def is_peer(self) -> bool:
        return self.detect is not None


def _state_dict_bytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def _torch_runner(name: str, model: nn.Module) -> Runner:
    model = model.eval()

    def forward(x):
        with torch.inference_mode():
            return model(x)[:3]

    return Runner(model=name, backend="torch", file_bytes=_state_dict_bytes(model),
                  parameters=sum(p.numel() for p in model.parameters()),
                  prepare=lambda threads: None, forward=forward,
                  prior_config=getattr(model, "prior_config", None))


def _onnx_runner(name: str, backend: str, onnx_path: Path, parameters: int, prior_config=None) -> Runner:
    from ffcore.deploy.runtime import OnnxDetector

    sessions: dict[int, OnnxDetector] = {}
    runner = Runner(model=name, backend=backend, file_bytes=onnx_path.stat().st_size, parameters=parameters,
                    prior_config=prior_config)
    current: list[OnnxDetector] = []

    def prepare(threads: int) -> None:
        if threads not in sessions:
            sessions[threads] = OnnxDetector(onnx_path, threads=threads, name=name)
        current[:] = [sessions[threads]]

    runner.prepare = prepare
    runner.forward = lambda x: current[0](x)
    return runner


def _calibration_files(count: int) -> list[Path]:
    """Validation images of the synthetic dataset when it exists, else the shared demo photos."""
    from ffcore.deploy.int8 import calibration_images
    from ffcore.paths import default_synthetic_root, shared_dir

    try:
        return calibration_images(default_synthetic_root(), count=count)
    except FileNotFoundError:
        return calibration_images(shared_dir() / "images", count=count)


def build_runners(models: Sequence[tuple[str, nn.Module]], backends: Sequence[str], work_dir: Path,
                  calibration_count: int = 8, calibration_size: int = 640) -> list[Runner]:
    from ffcore.deploy.export import export_onnx
    from ffcore.deploy.int8 import quantize_int8

    runners = []
    for name, model in models:
        parameters = sum(p.numel() for p in model.parameters())
        priors = getattr(model, "prior_config", None)   # the exported graph has the model's heads
        if "torch" in backends:
            runners.append(_torch_runner(name, model))
        if "onnx_fp32" in backends or "onnx_int8" in backends:
            fp32 = work_dir / f"{name}.onnx"
            export_onnx(model, fp32, parity_sizes=((256, 256),), strict=True)
            if "onnx_fp32" in backends:
                runners.append(_onnx_runner(name, "onnx_fp32", fp32, parameters, priors))
            if "onnx_int8" in backends:
                int8 = quantize_int8(fp32, work_dir / f"{name}_int8.onnx", _calibration_files(calibration_count),
                                     size=calibration_size)
                runners.append(_onnx_runner(name, "onnx_int8", int8, parameters, priors))
    return runners
