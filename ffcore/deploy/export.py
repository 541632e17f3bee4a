"""ONNX export with an ONNX Runtime parity check (INT8 quantisation of the exported file is
`ffcore.deploy.int8`).

The export uses PyTorch's dynamo exporter (`torch.onnx.export(..., dynamo=True)`), which
translates `torchvision::deform_conv2d` (FeatherFace V1's modulated deformable SSH) into
the standard ONNX `DeformConv` operator (opset >= 19) without any custom translation.
Batch, height and width are dynamic. Every export is followed by a parity check in
ONNX Runtime against the PyTorch model at several input sizes; the check returns the
maximum absolute difference of `loc`, `conf` and `landm` per size.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from ffcore.deploy.runtime import INPUT_NAME, OUTPUT_NAMES, PRIOR_CONFIG_KEY, OnnxDetector
from ffcore.preprocess import sample_batch

MIN_OPSET = 19            # first opset with DeformConv
DEFAULT_OPSET = 19
PARITY_TOLERANCE = 1e-4   # max |PyTorch - ONNX Runtime| allowed on every output
DEFAULT_PARITY_SIZES = ((640, 640), (480, 640))   # square and VGA prove the dynamic H, W

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """An export that failed or whose ONNX model disagrees with PyTorch."""


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------

class _DetectorOutputs(nn.Module):
    """Pins the traced call to `model(x)` -> (loc, conf, landm), whatever extra arguments forward takes."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        loc, conf, landm = self.model(image)[:3]
        return loc, conf, landm


@dataclass
class ExportResult:
    """What `export_onnx` produced: the file, its size and the parity check."""

    path: Path
    opset: int
    file_bytes: int
    operators: dict[str, int]
    parity: "ParityReport | None" = None

    def summary(self) -> str:
        lines = [f"ONNX model: {self.path} (opset {self.opset}, {self.file_bytes / 1e6:.3f} MB)",
                 "operators: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.operators.items()))]
        if self.parity is not None:
            lines.append(self.parity.to_text())
        return "\n".join(lines)


def export_onnx(model: nn.Module, path: str | Path, opset: int = DEFAULT_OPSET,
                example_size: tuple[int, int] = (256, 256),
                parity_sizes: Sequence[tuple[int, int]] | None = DEFAULT_PARITY_SIZES,
                tolerance: float = PARITY_TOLERANCE, strict: bool = True, quiet: bool = True,
                deploy: bool = True) -> ExportResult:
    """Export `model` (eval mode, CPU, float32) to ONNX with dynamic batch, height and width.

    `deploy` (default): the graph written is `ffcore.deploy.graph.deploy_model(model)` -- batch norm
    folded, shuffles folded into the next convolution, heads merged, compact attention; exact
    rewrites, checked against the model at 1e-5 before export. `deploy=False` writes the
    literal graph of the modules as trained. The parity check always compares with `model`.

    Every model accepts any height and width, FeatherFace V1 included: its TF-"same"
    max-pool padding is computed from the input's shape inside the graph
    (`_tf_same_max_pool_onnx`). After writing, runs `check_parity` at `parity_sizes`
    (skip with None). With `strict`, a parity failure raises `ExportError` (the file is
    kept for inspection).
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old: DeformConv (FeatherFace V1) needs opset >= {MIN_OPSET}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().float().cpu()
    if deploy:
        from ffcore.deploy.graph import deploy_model

        graph_model = deploy_model(model)
    else:
        graph_model = model
    wrapped = _DetectorOutputs(graph_model).eval()

    height, width = example_size
    # An example batch of 2 keeps torch.export from specialising the batch dimension to 1.
    example = (sample_batch(height, width, batch=2),)
    dims = {0: torch.export.Dim("batch", min=1, max=1024), 2: torch.export.Dim.DYNAMIC,
            3: torch.export.Dim.DYNAMIC}
    sink = io.StringIO()
    # The exporter narrates every stage on stdout; keep it for the error message only.
    redirect = contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext()
    try:
        with redirect, torch.no_grad():
            program = torch.onnx.export(wrapped, example, dynamo=True, opset_version=opset,
                                        input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                                        dynamic_shapes=(dims,), external_data=False, verbose=False,
                                        custom_translation_table=_custom_translations())
        program.save(str(path))
    except Exception as error:   # the exporter raises many types; name the model and keep the cause
        raise ExportError(f"ONNX export of {getattr(model, 'name', type(model).__name__)} failed: {error}\n"
                          f"exporter log:\n{sink.getvalue()[-3000:]}") from error
    _write_prior_config(path, getattr(model, "prior_config", None))

    result = ExportResult(path=path, opset=opset, file_bytes=path.stat().st_size, operators=onnx_operators(path))
    if parity_sizes:
        result.parity = check_parity(model, path, parity_sizes, tolerance=tolerance)
        if strict and not result.parity.passed:
            raise ExportError(f"ONNX model {path} disagrees with PyTorch beyond {tolerance:g}:\n"
                              f"{result.parity.to_text()}")
    return result


def _tf_same_max_pool_onnx(x, kernel_size: int, stride: int):
    """ONNX for `ffcore::tf_same_max_pool2d`: TF-"same" zero padding computed from Shape(x), then MaxPool.

    extra = max(k - s + (-n mod s), 0) per spatial axis, floor half before (ONNX integer Mod
    with fmod=0 takes the divisor's sign, as Python's % does).
    """
    from onnxscript import opset19 as op

    spatial = op.Shape(x, start=2, end=4)                                   # [H, W], int64
    remainder = op.Mod(op.Neg(spatial), op.Constant(value_ints=[stride]))
    extra = op.Max(op.Add(remainder, op.Constant(value_ints=[kernel_size - stride])),
                   op.Constant(value_ints=[0]))
    before = op.Div(extra, op.Constant(value_ints=[2]))
    after = op.Sub(extra, before)
    no_pad = op.Constant(value_ints=[0, 0])
    pads = op.Concat(no_pad, before, no_pad, after, axis=0)
    padded = op.Pad(x, pads)                                                # constant mode, zeros
    # MaxPool's optional second output (indices) is declared by onnxscript; take the values.
    pooled, _ = op.MaxPool(padded, kernel_shape=[kernel_size, kernel_size], strides=[stride, stride])
    return pooled


def _custom_translations() -> dict:
    """Translations of this package's own operators for the dynamo ONNX exporter."""
    from ffcore.models.necks import tf_same_max_pool2d   # defining it registers torch.ops.ffcore

    return {tf_same_max_pool2d._opoverload: _tf_same_max_pool_onnx}


def _write_prior_config(path: Path, prior_config) -> None:
    """Store the model's anchor geometry in the ONNX metadata: the graph's outputs only decode with it."""
    import dataclasses
    import json

    import onnx

    if prior_config is None:
        return
    graph = onnx.load(str(path), load_external_data=False)
    entry = graph.metadata_props.add()
    entry.key, entry.value = PRIOR_CONFIG_KEY, json.dumps(dataclasses.asdict(prior_config))
    onnx.save(graph, str(path))


def onnx_operators(path: str | Path) -> dict[str, int]:
    """Operator type -> count in the main graph of an ONNX file."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


# --------------------------------------------------------------------------------------------
# Parity
# --------------------------------------------------------------------------------------------

@dataclass
class ParityReport:
    """Max |PyTorch - ONNX Runtime| per input size and output."""

    rows: list[dict] = field(default_factory=list)   # {"height", "width", "batch", "output", "max_abs_diff", "max_abs_ref"}
    tolerance: float = PARITY_TOLERANCE

    @property
    def max_abs_diff(self) -> float:
        return max((row["max_abs_diff"] for row in self.rows), default=math.nan)

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(row["max_abs_diff"] <= self.tolerance for row in self.rows)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def to_text(self) -> str:
        lines = [f"parity PyTorch vs ONNX Runtime (tolerance {self.tolerance:g}):"]
        for row in self.rows:
            verdict = "ok" if row["max_abs_diff"] <= self.tolerance else "FAIL"
            lines.append(f"  {row['height']}x{row['width']} batch {row['batch']} {row['output']:>5}: "
                         f"max |diff| {row['max_abs_diff']:.3g} (outputs up to {row['max_abs_ref']:.3g}) {verdict}")
        lines.append(f"  overall: {'PASSED' if self.passed else 'FAILED'} (max {self.max_abs_diff:.3g})")
        return "\n".join(lines)


def compare_outputs(reference: Sequence[torch.Tensor], candidate: Sequence[torch.Tensor], height: int, width: int,
                    tolerance: float = PARITY_TOLERANCE) -> ParityReport:
    report = ParityReport(tolerance=tolerance)
    for name, ref, out in zip(OUTPUT_NAMES, reference, candidate):
        ref = torch.as_tensor(ref).float()
        out = torch.as_tensor(out).float()
        if ref.shape != out.shape:
            raise ExportError(f"output {name!r} at {height}x{width}: PyTorch shape {tuple(ref.shape)} but "
                              f"ONNX Runtime shape {tuple(out.shape)}")
        report.rows.append({"height": height, "width": width, "batch": int(ref.shape[0]), "output": name,
                            "max_abs_diff": float((ref - out).abs().max()),
                            "max_abs_ref": float(ref.abs().max())})
    return report


def check_parity(model: nn.Module, onnx_path: str | Path,
                 sizes: Iterable[tuple[int, int]] = DEFAULT_PARITY_SIZES, batch: int = 1,
                 tolerance: float = PARITY_TOLERANCE, threads: int = 1) -> ParityReport:
    """Run PyTorch (eval) and ONNX Runtime on the same inputs at each size; report max abs differences."""
    detector = OnnxDetector(onnx_path, threads=threads)
    model = model.eval()
    report = ParityReport(tolerance=tolerance)
    for height, width in sizes:
        x = sample_batch(height, width, batch=batch)
        with torch.no_grad():
            reference = model(x)[:3]
        report.rows += compare_outputs(reference, detector(x), height, width, tolerance).rows
    return report
