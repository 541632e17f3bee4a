"""ONNX export with an ONNX Runtime parity check, and INT8 static quantisation.

The export uses PyTorch's dynamo exporter (`torch.onnx.export(..., dynamo=True)`), which
translates `torchvision::deform_conv2d` (FeatherFace V1's modulated deformable SSH) into
the standard ONNX `DeformConv` operator (opset >= 19) without any custom translation.
Batch, height and width are dynamic. Every export is followed by a parity check in
ONNX Runtime against the PyTorch model at several input sizes; the check returns the
maximum absolute difference of `loc`, `conf` and `landm` per size.

INT8 uses ONNX Runtime's static quantisation (QDQ format, per-channel weights) calibrated
on validation images read through `ffcore.preprocess`; operators ONNX Runtime cannot
quantise (`DeformConv`) stay in float.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
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


# --------------------------------------------------------------------------------------------
# INT8 static quantisation
# --------------------------------------------------------------------------------------------

def calibration_images(root: str | Path, count: int = 32, split: str | None = None) -> list[Path]:
    """The first `count` images (sorted) of a WIDER-format tree's `split` ("train" or "val"), its
    folders found by `ffcore.data.layout.WiderFaceLayout` (WIDER_train/images, train/images, ...).

    By default the training split, then the validation split when there is no training split:
    calibrating on the images an INT8 model is then evaluated on would flatter it. Falls back to
    any `*.jpg` under `root` when it is not a WIDER-format root.
    """
    from ffcore.data.layout import WiderFaceLayout

    if split not in (None, "train", "val"):
        raise ValueError(f"calibration split must be 'train' or 'val', got {split!r}")
    root = Path(root)
    layout = WiderFaceLayout.discover(root)
    folders = {"train": layout.train_images, "val": layout.val_images}
    splits = (split,) if split is not None else ("train", "val")
    search = next((folders[s] for s in splits if folders[s] is not None), root)
    images = sorted(search.rglob("*.jpg"))
    if not images:
        raise FileNotFoundError(f"no calibration images (*.jpg) under {search}: pass a WIDER-format dataset root "
                                f"(with WIDER_train/images or train/images) or write the synthetic one with "
                                f"`ffcore synth`")
    return images[:count]


def _calibration_reader(images: Sequence[Path], size: int, input_name: str = INPUT_NAME):
    from onnxruntime.quantization import CalibrationDataReader

    from ffcore.data.transforms import EvalTransform, EvalTransformConfig
    from ffcore.preprocess import read_image

    # The evaluation letterbox: long side to `size`, padded right/bottom with the mean (0 after subtraction).
    letterbox = EvalTransform(EvalTransformConfig(image_size=size))
    no_faces = np.zeros((0, 15), np.float32)

    class WiderCalibrationReader(CalibrationDataReader):
        """Feeds calibration images one at a time, letterboxed as for batched evaluation."""

        def __init__(self):
            self._images = iter(images)

        def get_next(self):
            path = next(self._images, None)
            if path is None:
                return None
            return {input_name: letterbox(read_image(path), no_faces)[0][None]}

        def rewind(self):
            self._images = iter(images)

    return WiderCalibrationReader()


CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
DEFAULT_CALIBRATION = "percentile"
DEFAULT_PERCENTILE = 99.999


def float_boundary_nodes(path: str | Path) -> list[str]:
    """Names of the nodes to keep in float: the first convolution and everything after the last ones.

    The first convolution sees the raw image (wide range, 3 channels: little to gain, much to
    lose); the head convolutions and the reshapes/concatenations after them produce the box
    offsets and logits the decoder reads directly, where an 8-bit step is a visible box shift.
    Found by walking back from each graph output to the nearest Conv nodes.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    keep, stack = [], [o.name for o in graph.output]
    seen: set[str] = set()
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        keep.append(node.name)
        if node.op_type != "Conv":   # stop at the head convolutions
            stack.extend(node.input)
    image = graph.input[0].name
    first = next((n for n in graph.node if n.op_type == "Conv" and image in n.input), None)
    if first is not None and first.name not in seen:
        keep.append(first.name)
    return keep


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, calibration: Sequence[Path] | str | Path,
                  size: int = 640, count: int = 32, per_channel: bool = True,
                  method: str = DEFAULT_CALIBRATION, percentile: float = DEFAULT_PERCENTILE,
                  keep_boundaries_float: bool = True, reduce_range: bool = False,
                  op_types: Sequence[str] | None = None, nodes_to_exclude: Sequence[str] = ()) -> Path:
    """Static INT8 quantisation (QDQ, int8 weights per channel, uint8 activations) of an ONNX file.

    `calibration` is a list of image files or a dataset root (first `count` validation images).
    `method`: "percentile" (activation ranges clipped at `percentile` of the calibration
    histogram, the default), "entropy" (KL-divergence thresholds) or "minmax" (the plain
    range, which lets a few outliers stretch the 8-bit step). `keep_boundaries_float` keeps
    the first convolution and the heads in float (`float_boundary_nodes`).

    `reduce_range` quantises weights to 7 bits: ONNX Runtime's remedy for the int16
    saturation of VPMADDUBSW on x86 CPUs without VNNI; measured worse here (docs/deployment.md),
    so off by default. `op_types` limits quantisation to those operator types (None: every type
    ONNX Runtime quantises); `nodes_to_exclude` keeps more nodes in float.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise ValueError(f"unknown calibration method {method!r}; use one of {', '.join(CALIBRATION_METHODS)}")
    images = (list(calibration) if isinstance(calibration, (list, tuple))
              else calibration_images(calibration, count=count))
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    prepared = int8_path.with_suffix(".prep.onnx")
    # Shape inference + graph cleanup first, as ONNX Runtime recommends before quantising.
    # ONNX shape inference only: the symbolic pass cannot follow the dynamic H, W through Resize.
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    try:
        excluded = (float_boundary_nodes(prepared) if keep_boundaries_float else []) + list(nodes_to_exclude)
        quantize_static(str(prepared), str(int8_path), _calibration_reader(images, size),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=per_channel, reduce_range=reduce_range,
                        calibrate_method=methods[method], nodes_to_exclude=excluded,
                        op_types_to_quantize=list(op_types) if op_types else None,
                        extra_options={"CalibPercentile": percentile})
    finally:
        prepared.unlink(missing_ok=True)
    return int8_path


def output_agreement(fp32_path: str | Path, int8_path: str | Path, size: int = 320) -> dict:
    """How close the INT8 model's outputs are to FP32 on the sample image: correlation and max |diff| per output."""
    x = sample_batch(size, size).numpy()
    reference = OnnxDetector(fp32_path).run_numpy(x)
    quantised = OnnxDetector(int8_path).run_numpy(x)
    agreement = {}
    for name, ref, out in zip(OUTPUT_NAMES, reference, quantised):
        agreement[name] = {"pearson_r": float(np.corrcoef(ref.ravel(), out.ravel())[0, 1]),
                           "max_abs_diff": float(np.abs(ref - out).max())}
    return agreement
