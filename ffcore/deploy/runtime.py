"""ONNX Runtime: a session with fixed threads, and an exported detector behind the PyTorch contract.

An ffcore ONNX file (`ffcore.deploy.export.export_onnx`) takes `image` [B, 3, H, W] float32 and
returns (loc, conf, landm); its anchor geometry is stored in the model metadata under
`PRIOR_CONFIG_KEY`, since the outputs only decode with it. `OnnxDetector` reads both, so the
evaluator, `postprocess` and the benchmark treat an ONNX file like a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

INPUT_NAME = "image"
OUTPUT_NAMES = ("loc", "conf", "landm")
PRIOR_CONFIG_KEY = "ffcore_prior_config"


def read_prior_config(session):
    """The `PriorConfig` stored by `export_onnx` in a session's model metadata (the default when absent)."""
    import json

    from ffcore.anchors import DEFAULT_PRIORS, PriorConfig

    stored = session.get_modelmeta().custom_metadata_map.get(PRIOR_CONFIG_KEY)
    if stored is None:
        return DEFAULT_PRIORS   # exported before the geometry was recorded: the references' two anchors
    values = json.loads(stored)
    return PriorConfig(min_sizes=tuple(tuple(level) for level in values["min_sizes"]), steps=tuple(values["steps"]),
                       variance=tuple(values["variance"]), clip=bool(values["clip"]),
                       aspect_ratios=tuple(values["aspect_ratios"]))


def ort_session(path: str | Path, threads: int = 1, providers: Sequence[str] | None = None,
                optimize: bool = True):
    """An ONNX Runtime session with a fixed number of intra-op threads (inter-op 1)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options,
                                providers=list(providers or ["CPUExecutionProvider"]))


class OnnxDetector:
    """An ONNX Runtime model behind the PyTorch detector contract.

    `detector(x)` takes float32 [B, 3, H, W] (tensor or array) and returns torch tensors
    (loc, conf, landm), so the evaluator, `postprocess` and the benchmark treat it like a model.
    """

    def __init__(self, path: str | Path, threads: int = 1, providers: Sequence[str] | None = None,
                 name: str | None = None):
        self.path = Path(path)
        self.session = ort_session(self.path, threads=threads, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.name = name or self.path.stem
        # the exported model's own anchors (a 9-anchor head does not decode with the default two)
        self.prior_config = read_prior_config(self.session)

    def run_numpy(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(list(OUTPUT_NAMES), {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})

    def __call__(self, x):
        array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        return tuple(torch.from_numpy(o) for o in self.run_numpy(array))

    # Callers written for nn.Module call these; they are no-ops for a fixed ONNX graph.
    def eval(self) -> "OnnxDetector":
        return self

    def to(self, *args, **kwargs) -> "OnnxDetector":
        return self
