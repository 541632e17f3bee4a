"""Parameter and FLOP accounting of the registered models.

Two parameter counts are reported for every part:

- `parameters`: the true count, `sum(p.numel() for p in part.parameters())`;
- `thop_parameters`: what the `thop` profiler reports. thop only counts the parameters of
  leaf modules of the standard types it has rules for (Conv, BatchNorm, Linear, ...), and
  only when their `forward` runs. It therefore misses weights applied functionally
  (`torchvision.ops.deform_conv2d` in the deformable SSH) and free `nn.Parameter`s such as
  the BiFPN fusion weights. That is why FeatherFace V1's paper says 0.49M.

FLOPs are counted by fvcore, which counts ONE MULTIPLY-ADD AS ONE FLOP (so the figures
are multiply-accumulates, "MACs"). `torchvision::deform_conv2d` gets a handle counting its
convolution multiply-adds (out elements x in_channels/groups x kh x kw); the bilinear
sampling of the offsets is not counted.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import pandas as pd
import torch
import torch.nn as nn

# Leaf module types thop has counting rules for that can hold parameters (thop matches
# the exact type, not subclasses).
THOP_COUNTED_TYPES: tuple[type, ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.PReLU, nn.Linear,
    nn.RNNCell, nn.GRUCell, nn.LSTMCell, nn.RNN, nn.GRU, nn.LSTM,
)

# Input used only to find out which modules run (thop counts a module's parameters in
# its forward hook); small so the walk is cheap.
_PROBE_SIZE = 64


def model_parts(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(part name, module) in forward order: the model's own `parts` (or the detector's PARTS),
    else its top-level children."""
    from ffcore.models.detector import PARTS

    declared = tuple(getattr(model, "parts", ()) or PARTS)
    names = [n for n in declared if isinstance(getattr(model, n, None), nn.Module)]
    if not names:
        names = [n for n, _ in model.named_children()]
    return [(n, getattr(model, n)) for n in names]


def _modules_run_in_forward(model: nn.Module, size: int = _PROBE_SIZE) -> set[nn.Module]:
    ran: set[nn.Module] = set()
    hooks = [m.register_forward_hook(lambda module, _inputs, _output: ran.add(module)) for m in model.modules()]
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return ran


def thop_counted_parameters(model: nn.Module) -> set[int]:
    """ids of the parameters thop would count (leaf standard layers that run in forward)."""
    ran = _modules_run_in_forward(model)
    counted: set[int] = set()
    for module in model.modules():
        if type(module) in THOP_COUNTED_TYPES and not any(True for _ in module.children()) and module in ran:
            counted.update(id(p) for p in module.parameters(recurse=False))
    return counted


def parameter_table(model: nn.Module) -> pd.DataFrame:
    """One row per part plus a `total` row: true parameter count and thop's count."""
    counted = thop_counted_parameters(model)
    rows = []
    for name, part in model_parts(model):
        params = list(part.parameters())
        rows.append({"part": name, "parameters": sum(p.numel() for p in params),
                     "thop_parameters": sum(p.numel() for p in params if id(p) in counted)})
    rows.append({"part": "total", "parameters": sum(p.numel() for p in model.parameters()),
                 "thop_parameters": sum(p.numel() for p in model.parameters() if id(p) in counted)})
    table = pd.DataFrame(rows)
    table["missed_by_thop"] = table["parameters"] - table["thop_parameters"]
    return table


def explain_thop_difference(model: nn.Module) -> str:
    """One sentence saying which parameters thop does not see, with their counts."""
    counted = thop_counted_parameters(model)
    functional, free, idle = 0, 0, 0
    for module in model.modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in counted]
        if not own:
            continue
        size = sum(p.numel() for p in own)
        if type(module).__name__ == "ModulatedDeformConv2d":
            functional += size
        elif type(module) in THOP_COUNTED_TYPES:
            idle += size
        else:
            free += size
    if functional == free == idle == 0:
        return "thop counts every parameter of this model."
    parts = []
    if functional:
        parts.append(f"{functional:,} weights applied through torchvision.ops.deform_conv2d")
    if free:
        parts.append(f"{free:,} free nn.Parameters outside standard layers (e.g. BiFPN fusion weights)")
    if idle:
        parts.append(f"{idle:,} parameters of layers that never run in forward")
    return "thop misses " + " and ".join(parts) + "."


# ------------------------------------------------------------------------------- FLOPs

def _deform_conv2d_flop_jit(inputs, outputs) -> int:
    """Multiply-adds of torchvision::deform_conv2d: out elements x (C_in / groups) x kh x kw."""
    from fvcore.nn.jit_handles import get_shape

    weight_shape = get_shape(inputs[1])  # (C_out, C_in / groups, kh, kw)
    out_shape = get_shape(outputs[0])
    out_elements = 1
    for dim in out_shape:
        out_elements *= dim
    return out_elements * weight_shape[1] * weight_shape[2] * weight_shape[3]


FLOP_HANDLES = {"torchvision::deform_conv2d": _deform_conv2d_flop_jit}


def count_flops(model: nn.Module, height: int = 640, width: int = 640) -> dict[str, int]:
    """FLOPs per part and `total` (fvcore; ONE MULTIPLY-ADD = ONE FLOP), eval mode, batch 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import touches deprecated torch.jit APIs
        from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros(1, 3, height, width, device=device)
    fvcore_logger = logging.getLogger("fvcore")
    previous_level = fvcore_logger.level
    fvcore_logger.setLevel(logging.ERROR)  # fvcore logs every op it has no rule for
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # jit tracer warnings
            analysis = FlopCountAnalysis(model, x).set_op_handle(**FLOP_HANDLES)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            by_module = analysis.by_module()
            result = {name: int(by_module.get(name, 0)) for name, _ in model_parts(model)}
            result["total"] = int(analysis.total())
    finally:
        fvcore_logger.setLevel(previous_level)
        model.train(was_training)
    return result


# ------------------------------------------------------------------------- CLI handler

def params_command(models: list[str] | None = None, size: int = 640, no_flops: bool = False,
                   json_out: str | None = None) -> int:
    """`ffcore params`: per-part table for every (or the named) registered model(s)."""
    from ffcore.models import create_model, list_models

    report = {}
    flop_column = f"mflops_{size}x{size} (1 MAC = 1 FLOP)"
    for name in models or list_models():
        model = create_model(name)
        table = parameter_table(model)
        if not no_flops:
            flops = count_flops(model, size, size)
            table[flop_column] = [round(flops[part] / 1e6, 1) for part in table["part"]]
        explanation = explain_thop_difference(model)
        print(f"\n== {name}")
        print(table.to_string(index=False))
        print(explanation)
        report[name] = {"table": table.to_dict(orient="records"), "thop_difference": explanation,
                        "flops_note": "fvcore, one multiply-add counted as one FLOP"}
    if json_out:
        path = Path(json_out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {path}")
    return 0
