"""Parameter and FLOP accounting of the registered models.

Two parameter counts are reported for every part:

- `parameters`: the true count, `sum(p.numel() for p in part.parameters())`;
- `thop_parameters`: what the `thop` profiler itself reports (`thop.profile`, the release
  pinned in requirements.txt, 0.1.1.post2209072238 of September 2022, the one FeatherFace's
  code used). thop counts the parameters of modules of the standard types it has rules
  for (Conv, BatchNorm, Linear, ...), matched by exact type, and only when their `forward`
  runs. It therefore misses weights applied functionally (`torchvision.ops.deform_conv2d`
  in the deformable SSH), free `nn.Parameter`s such as the BiFPN fusion weights, and layers
  a forward skips. That is why FeatherFace V1's paper says 0.49M.

`explain_thop_difference` accounts for the gap without thop, from the model's structure
(which module owns each parameter, and which modules a forward runs), so the two can be
checked against each other.

FLOPs are counted by fvcore, which counts ONE MULTIPLY-ADD AS ONE FLOP (so the figures
are multiply-accumulates, "MACs"). `torchvision::deform_conv2d` gets a handle counting its
convolution multiply-adds (out elements x in_channels/groups x kh x kw); the bilinear
sampling of the offsets is not counted.
"""

from __future__ import annotations

import copy
import logging
import warnings

import pandas as pd
import torch
import torch.nn as nn

# Input of the thop run and of the structural walk: both must see the same forward (a
# model may skip a layer depending on its input); small so the runs are cheap.
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


def _import_thop():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # thop 0.1.1 imports distutils.version (deprecated)
        import thop
        from thop.profile import register_hooks
    return thop, register_hooks


def _probe_input(model: nn.Module, size: int) -> torch.Tensor:
    parameter = next(model.parameters())
    return torch.zeros(1, 3, size, size, device=parameter.device, dtype=parameter.dtype)


def thop_profile(model: nn.Module, size: int = _PROBE_SIZE) -> dict:
    """Run `thop.profile` on a copy of `model` (thop leaves buffers on the modules it visits).

    Returns {"parameters": total, "macs": total, "parts": {top-level child: parameters}}, as
    thop reports them for a 1 x 3 x size x size input of zeros in eval mode.
    """
    thop, _ = _import_thop()
    probe = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs, parameters, layers = thop.profile(probe, inputs=(_probe_input(probe, size),), verbose=False,
                                                ret_layer_info=True)
    return {"parameters": int(parameters), "macs": int(macs),
            "parts": {name: int(info[1]) for name, info in layers.items()}}


def _modules_run_in_forward(model: nn.Module, size: int = _PROBE_SIZE) -> set[nn.Module]:
    ran: set[nn.Module] = set()
    hooks = [m.register_forward_hook(lambda module, _inputs, _output: ran.add(module)) for m in model.modules()]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(_probe_input(model, size))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return ran


def parameter_counts(model: nn.Module) -> pd.DataFrame:
    """One row per part plus a `total` row: true parameter count and thop's count."""
    thop_counts = thop_profile(model)
    rows = []
    for name, part in model_parts(model):
        rows.append({"part": name, "parameters": sum(p.numel() for p in part.parameters()),
                     "thop_parameters": thop_counts["parts"].get(name, 0)})
    rows.append({"part": "total", "parameters": sum(p.numel() for p in model.parameters()),
                 "thop_parameters": thop_counts["parameters"]})
    table = pd.DataFrame(rows)
    table["missed_by_thop"] = table["parameters"] - table["thop_parameters"]
    return table


def thop_blind_spots(model: nn.Module) -> dict[str, int]:
    """Parameters thop cannot count, by reason, found from the model's structure alone:

    - "deform_conv2d": the main weights of modulated deformable convs, applied through
      `torchvision.ops.deform_conv2d` rather than an `nn.Conv2d`;
    - "no_rule": parameters owned by modules whose exact type thop has no rule for
      (BiFPN fusion weights, V2 Ultra's intensity control, layer subclasses);
    - "not_run": parameters of layers thop has a rule for that the forward does not run.
    """
    _, register_hooks = _import_thop()
    ran = _modules_run_in_forward(model)
    blind = {"deform_conv2d": 0, "no_rule": 0, "not_run": 0}
    for module in model.modules():
        size = sum(p.numel() for p in module.parameters(recurse=False))
        if not size:
            continue
        if type(module).__name__ == "ModulatedDeformConv2d":
            blind["deform_conv2d"] += size
        elif type(module) not in register_hooks:
            blind["no_rule"] += size
        elif module not in ran:
            blind["not_run"] += size
    return blind


def explain_thop_difference(model: nn.Module) -> str:
    """One sentence saying which parameters thop does not see, with their counts."""
    blind = thop_blind_spots(model)
    if not any(blind.values()):
        return "thop counts every parameter of this model."
    parts = []
    if blind["deform_conv2d"]:
        parts.append(f"{blind['deform_conv2d']:,} weights applied through torchvision.ops.deform_conv2d")
    if blind["no_rule"]:
        parts.append(f"{blind['no_rule']:,} free nn.Parameters outside the layer types it has rules for "
                     f"(e.g. BiFPN fusion weights)")
    if blind["not_run"]:
        parts.append(f"{blind['not_run']:,} parameters of layers that never run in forward")
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
