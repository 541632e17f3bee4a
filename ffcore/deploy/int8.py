"""INT8 static quantisation of an exported ONNX file, and what it costs.

INT8 uses ONNX Runtime's static quantisation (QDQ format, per-channel weights) calibrated
on validation images read through `ffcore.preprocess`; operators ONNX Runtime cannot
quantise (`DeformConv`) stay in float. `output_agreement` compares the two files' outputs on
one input; `int8_ap_change` evaluates both on the same images (the AP cost).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ffcore.deploy.runtime import INPUT_NAME, OUTPUT_NAMES, OnnxDetector
from ffcore.preprocess import sample_batch


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


def int8_ap_change(fp32_path: str | Path, int8_path: str | Path, data_root: str | Path | None = None,
                   limit: int | None = None, scale: str | int = "origin", threads: int = 2):
    """AP (easy/medium/hard) of the FP32 and INT8 ONNX models on a validation set, and the change.

    Runs `ffcore.eval.predict.evaluate_model` with `OnnxDetector`s standing in for the PyTorch
    model; `data_root` defaults to the synthetic dataset (results are then synthetic).
    Returns a DataFrame with one row per precision plus an "int8 - fp32" row.
    """
    import pandas as pd

    from ffcore.data.ground_truth import SETTINGS
    from ffcore.eval.predict import evaluate_model

    if data_root is None:
        from ffcore.data.synth import ensure_synthetic_dataset

        data_root = ensure_synthetic_dataset()
    rows = []
    for precision, path in (("fp32", fp32_path), ("int8", int8_path)):
        result = evaluate_model(OnnxDetector(path, threads=threads), data_root, scale=scale, limit=limit,
                                progress=False)
        rows.append({"precision": precision, **{k: float(result.ap[k]) for k in SETTINGS}})
    table = pd.DataFrame(rows)
    change = {"precision": "int8 - fp32"}
    for column in SETTINGS:
        change[column] = float(table[column].iloc[1] - table[column].iloc[0])
    return pd.concat([table, pd.DataFrame([change])], ignore_index=True)
