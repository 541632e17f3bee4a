"""What INT8 quantisation costs in AP: an FP32 and an INT8 ONNX file evaluated on the same images."""

from __future__ import annotations

from pathlib import Path


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
    from ffcore.deploy.runtime import OnnxDetector

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
