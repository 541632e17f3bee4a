"""Loading weights into a built model: ffcore's key names and the original implementations' layouts.

`load_state_dict_into(model, state_dict)` reads a state dict (or a dict holding one under
"state_dict"/"model") in ffcore's own key names or in the layout of Pytorch_Retinaface,
FeatherFace (V1), the V2 fork or the fork's ECA-CBAM models (f023145), converted by that
layout's key mapping below. `ffcore.models.load_pretrained` (in the registry, which this module
does not import) builds the model, reads ffcore checkpoints and calls it.

Wrapper prefixes (`module.` from DataParallel/DDP, `_orig_mod.` from torch.compile) are
stripped in one place, `strip_wrapper_prefixes`. The profiler buffers that `thop.profile` leaves
in a model it counted (`total_ops` / `total_params` on every module, saved with the weights by
the original FeatherFace training code) are dropped in one place, `drop_profiler_buffers`, and
the drop is logged and recorded on the model; nothing else is relaxed.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Callable

import torch.nn as nn

from ffcore.checkpoint import CheckpointError, load_checkpoint_file

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Buffers `thop.profile` registers on every module it counts (one float64 each); they are
# counters of that profiling run, not weights of the model.
PROFILER_BUFFER_NAMES = ("total_ops", "total_params")

log = logging.getLogger("ffcore.models")


def strip_wrapper_prefixes(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Remove `module.` / `_orig_mod.` prefixes (repeatedly, e.g. `module._orig_mod.`)."""
    stripped = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        stripped[key] = value
    return stripped


def is_profiler_buffer(key: str, value: Any) -> bool:
    """Whether `key` is one of thop's counters: `total_ops` / `total_params`, at any depth
    (the top level included), holding one number."""
    return key.rsplit(".", 1)[-1] in PROFILER_BUFFER_NAMES and getattr(value, "numel", lambda: 0)() == 1


def drop_profiler_buffers(model: nn.Module, state_dict: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The state dict without thop's counters that the model does not itself hold, and the dropped keys."""
    own = set(model.state_dict())
    dropped = [key for key, value in state_dict.items() if key not in own and is_profiler_buffer(key, value)]
    kept = {key: value for key, value in state_dict.items() if key not in dropped} if dropped else state_dict
    return kept, dropped


# ------------------------------------------------------------------------ key mappings
# Each layout is an ordered list of (pattern, replacement); the first matching pattern
# rewrites the key. A key no rule matches is kept unchanged (and reported if unexpected).

Rules = list[tuple[str, str]]

# MobileNet-0.25 as in Pytorch_Retinaface / the ImageNet file: stage1.0 is conv_bn
# (0 conv, 1 bn); every other block is conv_dw (0/1 depthwise conv/bn, 3/4 pointwise).
_BACKBONE_RULES: Rules = [
    (r"^stage1\.0\.0\.(.*)$", r"stage1.0.conv.\1"),
    (r"^stage1\.0\.1\.(.*)$", r"stage1.0.bn.\1"),
    (r"^(stage\d\.\d+)\.0\.(.*)$", r"\1.depthwise.conv.\2"),
    (r"^(stage\d\.\d+)\.1\.(.*)$", r"\1.depthwise.bn.\2"),
    (r"^(stage\d\.\d+)\.3\.(.*)$", r"\1.pointwise.conv.\2"),
    (r"^(stage\d\.\d+)\.4\.(.*)$", r"\1.pointwise.bn.\2"),
]


def _prefixed(prefix_from: str, prefix_to: str, rules: Rules) -> Rules:
    return [(f"^{re.escape(prefix_from)}" + pattern.lstrip("^"), prefix_to + repl) for pattern, repl in rules]


def _ssh_rules() -> Rules:
    # ssh1..3 -> context.levels.0..2; the original branch names differ only in case.
    return [
        (r"^ssh(\d)\.(conv\w+?)\.0\.offset_conv\.(.*)$", r"context.levels.{\1}.{\2}.conv.offset_conv.\3"),
        (r"^ssh(\d)\.(conv\w+?)\.0\.modulator_conv\.(.*)$", r"context.levels.{\1}.{\2}.conv.mask_conv.\3"),
        (r"^ssh(\d)\.(conv\w+?)\.0\.regular_conv\.weight$", r"context.levels.{\1}.{\2}.conv.weight"),
        (r"^ssh(\d)\.(conv\w+?)\.0\.(.*)$", r"context.levels.{\1}.{\2}.conv.\3"),
        (r"^ssh(\d)\.(conv\w+?)\.1\.(.*)$", r"context.levels.{\1}.{\2}.bn.\3"),
    ]


_CBAM_V1_RULES: Rules = [
    (r"ChannelGate\.mlp\.1\.(.*)$", r"channel_gate.mlp.0.\1"),
    (r"ChannelGate\.mlp\.3\.(.*)$", r"channel_gate.mlp.2.\1"),
    (r"SpatialGate\.spatial\.conv\.(.*)$", r"spatial_gate.conv.\1"),
    (r"SpatialGate\.spatial\.bn\.(.*)$", r"spatial_gate.bn.\1"),
]

_HEAD_TASK_RULES: Rules = [
    (r"^ClassHead\.(\d)\.conv1x1\.(.*)$", r"heads.cls.\1.\2"),
    (r"^BboxHead\.(\d)\.conv1x1\.(.*)$", r"heads.box.\1.\2"),
    (r"^LandmarkHead\.(\d)\.conv1x1\.(.*)$", r"heads.landmark.\1.\2"),
]

RETINAFACE_RULES: Rules = [
    *_prefixed("body.", "backbone.", _BACKBONE_RULES),
    (r"^fpn\.output1\.0\.(.*)$", r"neck.lateral3.conv.\1"),
    (r"^fpn\.output1\.1\.(.*)$", r"neck.lateral3.bn.\1"),
    (r"^fpn\.output2\.0\.(.*)$", r"neck.lateral4.conv.\1"),
    (r"^fpn\.output2\.1\.(.*)$", r"neck.lateral4.bn.\1"),
    (r"^fpn\.output3\.0\.(.*)$", r"neck.lateral5.conv.\1"),
    (r"^fpn\.output3\.1\.(.*)$", r"neck.lateral5.bn.\1"),
    (r"^fpn\.merge1\.0\.(.*)$", r"neck.merge3.conv.\1"),
    (r"^fpn\.merge1\.1\.(.*)$", r"neck.merge3.bn.\1"),
    (r"^fpn\.merge2\.0\.(.*)$", r"neck.merge4.conv.\1"),
    (r"^fpn\.merge2\.1\.(.*)$", r"neck.merge4.bn.\1"),
    *_ssh_rules(),
    *_HEAD_TASK_RULES,
]

_BIFPN_NODE_NAMES = [("conv4_up", "p4_td_conv"), ("conv3_up", "p3_out_conv"),
                     ("conv4_down", "p4_out_conv"), ("conv5_down", "p5_out_conv")]
_BIFPN_WEIGHT_NAMES = [("p4_w1", "p4_td_weights"), ("p3_w1", "p3_out_weights"),
                       ("p4_w2", "p4_out_weights"), ("p5_w2", "p5_out_weights")]

FEATHERFACE_V1_RULES: Rules = [
    *_prefixed("body.", "backbone.", _BACKBONE_RULES),
    *[(r"^bacbkbone_(\d)_cbam\." + p, r"backbone_attention.levels.\1." + r.replace(r"\1", r"\2"))
      for p, r in _CBAM_V1_RULES],
    *[(r"^bif_cbam_(\d)\." + p, r"neck_attention.levels.\1." + r.replace(r"\1", r"\2"))
      for p, r in _CBAM_V1_RULES],
    *[(rf"^bifpn\.(\d)\.{old}$", rf"neck.cells.\1.{new}") for old, new in _BIFPN_WEIGHT_NAMES],
    *[(rf"^bifpn\.(\d)\.{old}\.depthwise_conv\.conv\.(.*)$", rf"neck.cells.\1.{new}.depthwise.\2")
      for old, new in _BIFPN_NODE_NAMES],
    *[(rf"^bifpn\.(\d)\.{old}\.pointwise_conv\.conv\.(.*)$", rf"neck.cells.\1.{new}.pointwise.\2")
      for old, new in _BIFPN_NODE_NAMES],
    *[(rf"^bifpn\.(\d)\.{old}\.bn\.(.*)$", rf"neck.cells.\1.{new}.bn.\2") for old, new in _BIFPN_NODE_NAMES],
    (r"^bifpn\.(\d)\.p(\d)_down_channel_2\.0\.conv\.(.*)$", r"neck.cells.\1.in_p\2_bottom_up.conv.\3"),
    (r"^bifpn\.(\d)\.p(\d)_down_channel_2\.1\.(.*)$", r"neck.cells.\1.in_p\2_bottom_up.bn.\3"),
    (r"^bifpn\.(\d)\.p(\d)_down_channel\.0\.conv\.(.*)$", r"neck.cells.\1.in_p\2.conv.\3"),
    (r"^bifpn\.(\d)\.p(\d)_down_channel\.1\.(.*)$", r"neck.cells.\1.in_p\2.bn.\3"),
    (r"^ssh(\d)_cs\.1\.(.*)$", r"shuffle.levels.{\1}.reduce.conv.\2"),
    (r"^ssh(\d)_cs\.2\.(.*)$", r"shuffle.levels.{\1}.reduce.bn.\2"),
    (r"^ssh(\d)_cs\.3\.(.*)$", r"shuffle.levels.{\1}.depthwise.conv.\2"),
    (r"^ssh(\d)_cs\.4\.(.*)$", r"shuffle.levels.{\1}.depthwise.bn.\2"),
    (r"^ssh(\d)_cs\.5\.(.*)$", r"shuffle.levels.{\1}.expand.conv.\2"),
    (r"^ssh(\d)_cs\.6\.(.*)$", r"shuffle.levels.{\1}.expand.bn.\2"),
    *_ssh_rules(),
    *_HEAD_TASK_RULES,
]

# The thesis fork at f023145 (FeatherFaceCBAMExact, FeatherFaceECAcbaM and its parallel variant):
# V1's layout with the backbone typo fixed (`backbone_cbam_0`), ECA-CBAM modules named
# `{backbone,bifpn}_attention_<level>.{eca,sam}.conv` and no shuffle parameters.
FEATHERFACE_FORK_RULES: Rules = [
    *[(r"^backbone_cbam_(\d)\." + p, r"backbone_attention.levels.\1." + r.replace(r"\1", r"\2"))
      for p, r in _CBAM_V1_RULES],
    (r"^backbone_attention_(\d)\.(eca|sam)\.conv\.weight$", r"backbone_attention.levels.\1.\2.conv.weight"),
    (r"^bifpn_attention_(\d)\.(eca|sam)\.conv\.weight$", r"neck_attention.levels.\1.\2.conv.weight"),
    *FEATHERFACE_V1_RULES,
]

_V2_STAGE = {"stage1": "0", "stage2": "1", "stage3": "2", "p3": "0", "p4": "1", "p5": "2"}

FEATHERFACE_V2_RULES: Rules = [
    *_prefixed("body.", "backbone.", _BACKBONE_RULES),
    (r"^backbone_cbam_manager\.channel_gates\.(stage\d)\.(.*)$", r"backbone_attention.channel_gates.{\1}.\2"),
    (r"^backbone_cbam_manager\.spatial_gate\.spatial\.0\.(.*)$", r"backbone_attention.spatial_gate.conv.\1"),
    (r"^backbone_cbam_manager\.spatial_gate\.spatial\.1\.(.*)$", r"backbone_attention.spatial_gate.bn.\1"),
    (r"^bifpn_cbam_manager\.channel_gates\.(p\d)\.(.*)$", r"neck_attention.channel_gates.{\1}.\2"),
    (r"^bifpn_cbam_manager\.spatial_gate\.spatial\.0\.(.*)$", r"neck_attention.spatial_gate.conv.\1"),
    (r"^bifpn_cbam_manager\.spatial_gate\.spatial\.1\.(.*)$", r"neck_attention.spatial_gate.bn.\1"),
    *[(rf"^bifpn\.(\d)\.{old}$", rf"neck.cells.\1.{new}") for old, new in _BIFPN_WEIGHT_NAMES],
    *[(rf"^bifpn\.(\d)\.{old}\.(.*)$", rf"neck.cells.\1.{new}.\2") for old, new in _BIFPN_NODE_NAMES],
    (r"^bifpn\.(\d)\.p(\d)_down_channel\.0\.(.*)$", r"neck.cells.\1.in_p\2.conv.\3"),
    (r"^bifpn\.(\d)\.p(\d)_down_channel\.1\.(.*)$", r"neck.cells.\1.in_p\2.bn.\3"),
    # Grouped SSH: conv3x3 / conv5x5_1 are 1x1 reduce (0, 1) then grouped 3x3 (3, 4).
    (r"^ssh(\d)\.(conv3x3|conv5x5_1)\.0\.(.*)$", r"context.levels.{\1}.\2.reduce.conv.\3"),
    (r"^ssh(\d)\.(conv3x3|conv5x5_1)\.1\.(.*)$", r"context.levels.{\1}.\2.reduce.bn.\3"),
    (r"^ssh(\d)\.(conv3x3|conv5x5_1)\.3\.(.*)$", r"context.levels.{\1}.\2.spatial.conv.\3"),
    (r"^ssh(\d)\.(conv3x3|conv5x5_1)\.4\.(.*)$", r"context.levels.{\1}.\2.spatial.bn.\3"),
    (r"^ssh(\d)\.(conv\w+?)\.0\.(.*)$", r"context.levels.{\1}.{\2}.conv.\3"),
    (r"^ssh(\d)\.(conv\w+?)\.1\.(.*)$", r"context.levels.{\1}.{\2}.bn.\3"),
    (r"^ssh(\d)_cs\.conv\.0\.(.*)$", r"shuffle.levels.{\1}.reduce.conv.\2"),
    (r"^ssh(\d)_cs\.conv\.1\.(.*)$", r"shuffle.levels.{\1}.reduce.bn.\2"),
    (r"^ssh(\d)_cs\.conv\.3\.(.*)$", r"shuffle.levels.{\1}.expand.conv.\2"),
    (r"^ssh(\d)_cs\.conv\.4\.(.*)$", r"shuffle.levels.{\1}.expand.bn.\2"),
    (r"^shared_heads\.(\d)\.cls_head\.(.*)$", r"heads.levels.\1.cls.\2"),
    (r"^shared_heads\.(\d)\.bbox_head\.(.*)$", r"heads.levels.\1.box.\2"),
    (r"^shared_heads\.(\d)\.ldm_head\.(.*)$", r"heads.levels.\1.landmark.\2"),
]


# The fork's V2 Ultra (93095ff, `RetinaFaceV2Ultra`). Its "innovations" dict was never part of its
# state_dict; a dict holding them under `innovations.<name>.*` (the reference vectors) loads them into
# `techniques.*`. The dict's `ultra_cbam` and `ultra_ssh` are never called by the fork's forward and
# are not part of the model: their keys map to DROPPED_KEY and are left out.
DROPPED_KEY = ""

FEATHERFACE_V2_ULTRA_RULES: Rules = [
    *_prefixed("body.", "backbone.", _BACKBONE_RULES),
    *FEATHERFACE_V2_RULES[len(_BACKBONE_RULES):len(_BACKBONE_RULES) + 6],   # the two shared CBAM managers
    (r"^bifpn\.(\d)\.w_fusion$", r"neck.cells.\1.fusion_weights"),
    (r"^bifpn\.(\d)\.(depthwise|pointwise)_conv\.(.*)$", r"neck.cells.\1.\2.\3"),
    (r"^bifpn\.(\d)\.bn\.(.*)$", r"neck.cells.\1.bn.\2"),
    (r"^bifpn\.(\d)\.channel_reducers\.(\d)\.0\.(.*)$", r"neck.cells.\1.reducers.\2.conv.\3"),
    (r"^bifpn\.(\d)\.channel_reducers\.(\d)\.1\.(.*)$", r"neck.cells.\1.reducers.\2.bn.\3"),
    (r"^ssh(\d)\.(conv\w+?)\.0\.(.*)$", r"context.levels.{\1}.\2.conv.\3"),
    (r"^ssh(\d)\.(conv\w+?)\.1\.(.*)$", r"context.levels.{\1}.\2.bn.\3"),
    (r"^detection_heads\.(\d)\.shared_conv\.0\.(.*)$", r"heads.levels.\1.shared.conv.\2"),
    (r"^detection_heads\.(\d)\.shared_conv\.1\.(.*)$", r"heads.levels.\1.shared.bn.\2"),
    (r"^detection_heads\.(\d)\.cls_head\.(.*)$", r"heads.levels.\1.cls.\2"),
    (r"^detection_heads\.(\d)\.bbox_head\.(.*)$", r"heads.levels.\1.box.\2"),
    (r"^detection_heads\.(\d)\.ldm_head\.(.*)$", r"heads.levels.\1.landmark.\2"),
    (r"^innovations\.dynamic_sharing\.complexity_gate\.1\.(.*)$", r"techniques.dynamic_sharing.complexity_gate.\1"),
    (r"^innovations\.dynamic_sharing\.intensity_control$", r"techniques.dynamic_sharing.intensity_control"),
    (r"^innovations\.ultra_(cbam|ssh)\..*$", DROPPED_KEY),
]

def _fill_braces(key: str) -> str:
    # `{3}` -> level index 2 (original ssh1..3 / ssh1_cs..), `{conv3X3}` -> lower case,
    # `{stage1}` / `{p3}` -> level index 0.
    def fill(match: re.Match) -> str:
        token = match.group(1)
        if token.isdigit():
            return str(int(token) - 1)
        if token in _V2_STAGE:
            return _V2_STAGE[token]
        return token.lower()

    return re.sub(r"\{(\w+)\}", fill, key)


def _compile(rules: Rules) -> Callable[[str], str]:
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]

    def map_key(key: str) -> str:
        for pattern, repl in compiled:
            if pattern.match(key):
                return _fill_braces(pattern.sub(repl, key))
        return key

    return map_key


# layout name -> key mapping from that layout to ffcore's names
ORIGINAL_LAYOUTS: dict[str, Callable[[str], str]] = {
    "Pytorch_Retinaface": _compile(RETINAFACE_RULES),
    "FeatherFace": _compile(FEATHERFACE_V1_RULES),
    "FeatherFace V2 fork": _compile(FEATHERFACE_V2_RULES),
    "FeatherFace fork f023145": _compile(FEATHERFACE_FORK_RULES),
    "FeatherFace V2 Ultra fork 93095ff": _compile(FEATHERFACE_V2_ULTRA_RULES),
}
BACKBONE_LAYOUT = _compile(_BACKBONE_RULES)


def convert_state_dict(state_dict: dict[str, Any], layout: str) -> dict[str, Any]:
    """Rename an original implementation's keys (prefixes already stripped) to ffcore's."""
    mapper = ORIGINAL_LAYOUTS[layout]
    converted = {mapper(key): value for key, value in state_dict.items()}
    converted.pop(DROPPED_KEY, None)   # tensors of modules the original built but never used
    return converted


# ------------------------------------------------------------------------------ loading

def _key_mismatch(model: nn.Module, state_dict: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = sorted(f"{k} {tuple(state_dict[k].shape)} vs {tuple(expected[k].shape)}"
                         for k in set(expected) & set(state_dict)
                         if hasattr(state_dict[k], "shape") and tuple(state_dict[k].shape) != tuple(expected[k].shape))
    return missing, unexpected, wrong_shape


def _preview(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def extract_state_dict(obj: Any, where: str) -> dict[str, Any]:
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if not isinstance(obj, dict):
        raise CheckpointError(f"{where}: expected a state dict or a checkpoint dict, got {type(obj).__name__}")
    for wrapper_key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj.get(wrapper_key), dict):
            return obj[wrapper_key]
    return obj


def _best_conversion(model: nn.Module, state_dict: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The layout (ffcore's own or an original one) whose keys fit the model best."""
    expected = set(model.state_dict())
    candidates = [("ffcore", state_dict)] + [(name, convert_state_dict(state_dict, name)) for name in ORIGINAL_LAYOUTS]

    def misfit(item):
        keys = set(item[1])
        return len(expected ^ keys)

    return min(candidates, key=misfit)


def load_state_dict_into(model: nn.Module, state_dict: dict[str, Any], where: str = "state dict") -> str:
    """Load a state dict in any supported layout strictly; returns the layout's name.

    thop's profiler buffers are dropped first (counted in the log and in
    `model.dropped_profiler_buffers`); any other missing, unexpected or wrongly shaped key
    raises CheckpointError naming the keys.
    """
    state_dict, dropped = drop_profiler_buffers(model, strip_wrapper_prefixes(state_dict))
    model.dropped_profiler_buffers = len(dropped)
    if dropped:
        log.info("%s: dropped %d thop profiling buffers (total_ops / total_params, written by thop.profile "
                 "during the original training; counters, not weights)", where, len(dropped))
    layout, converted = _best_conversion(model, state_dict)
    missing, unexpected, wrong_shape = _key_mismatch(model, converted)
    if missing or unexpected or wrong_shape:
        lines = [f"{where} does not fit model {getattr(model, 'name', type(model).__name__)!r} "
                 f"(closest layout: {layout})"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {_preview(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {_preview(unexpected)}")
        if wrong_shape:
            lines.append(f"  wrong shapes ({len(wrong_shape)}): {_preview(wrong_shape)}")
        lines.append("  check the model name and options, or that the file is a checkpoint of this model")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(converted, strict=True)
    return layout


def has_imagenet_backbone(model: nn.Module) -> bool:
    """Whether `model.backbone` is the MobileNet-0.25 that the ImageNet file initialises."""
    from ffcore.models.backbone import MobileNetV1x025

    return isinstance(getattr(model, "backbone", None), MobileNetV1x025)


def require_imagenet_backbone() -> Path:
    """The ImageNet MobileNet-0.25 file, or an error naming every place it was looked for.

    The one check of the file's presence: training with `pretrained_backbone=True` without it stops
    here instead of starting from random weights while recording a pretrained start."""
    from ffcore.paths import IMAGENET_BACKBONE_FILE, find_imagenet_backbone, shared_dir, weights_dir

    path = find_imagenet_backbone()
    if path is None:
        raise CheckpointError(
            f"ImageNet backbone {IMAGENET_BACKBONE_FILE} not found: looked for {weights_dir() / IMAGENET_BACKBONE_FILE} "
            f"and {shared_dir() / 'weights' / IMAGENET_BACKBONE_FILE}. Put the file there (or set FFCORE_SHARED), pass "
            f"pretrained_backbone=<path> (--pretrained-backbone PATH), or start from random weights on purpose with "
            f"pretrained_backbone=False (--pretrained-backbone none), which the run records.")
    return path


def load_imagenet_backbone(model: nn.Module, path: str | Path | None = None) -> nn.Module:
    """Initialise `model.backbone` (MobileNet-0.25) from the ImageNet-pretrained file.

    The file holds {'state_dict': {'module.stage1.0.0.weight', ..., 'module.fc.*'}}; the
    classifier is dropped.
    """
    if path is None:
        path = require_imagenet_backbone()
    if not has_imagenet_backbone(model):
        raise CheckpointError(f"model {getattr(model, 'name', type(model).__name__)!r} has no MobileNet-0.25 "
                              f"backbone for the ImageNet weights to initialise")
    backbone = model.backbone
    obj = load_checkpoint_file(path)
    state_dict = strip_wrapper_prefixes(extract_state_dict(obj, str(path)))
    state_dict = {BACKBONE_LAYOUT(k): v for k, v in state_dict.items() if not k.startswith("fc.")}
    missing, unexpected, wrong_shape = _key_mismatch(backbone, state_dict)
    if missing or unexpected or wrong_shape:
        raise CheckpointError(f"{path} does not fit the MobileNet-0.25 backbone: missing {_preview(missing)}; "
                              f"unexpected {_preview(unexpected)}; wrong shapes {_preview(wrong_shape)}")
    backbone.load_state_dict(state_dict, strict=True)
    return model
