"""Structured pruning of the context (SSH) modules by the L1 norm of their filters: the tool.

`prune_context(model, ratio)` removes the SSH internal channels with the smallest mean L1
filter norm from a trained model; `pruning_table` reports parameters, FLOPs and optionally
AP at several ratios. What is pruned, how many channels and the registered
`<base>_pruned20` variants are defined with the models, in `ffcore.models.pruned`, so a
pruned checkpoint loads wherever models load; this module sits above them and the
complexity accounting it reports with.
"""

from __future__ import annotations

import copy

from torch import nn

from ffcore.models.pruned import (DEFAULT_RATIO, PRUNABLE_BASES, PrunableLayer, build_pruned, context_modules,
                                  prunable_layers, remove_context_channels, unit_scores, units_to_remove)

# Re-exported so the tool's callers (study, command line, tests) need one import.
__all__ = ["DEFAULT_RATIO", "PRUNABLE_BASES", "PrunableLayer", "build_pruned", "context_modules", "context_parameters",
           "prunable_layers", "prune_context", "pruning_table", "remove_context_channels", "unit_scores",
           "units_to_remove"]


def prune_context(model: nn.Module, ratio: float = DEFAULT_RATIO) -> nn.Module:
    """A copy of `model` with `ratio` of every SSH's internal channels removed (lowest L1 filters).

    The result keeps `name` / `overrides` of a registered base model pointing at the
    matching `<base>_pruned<NN>` variant when one is registered, so checkpoints reload.
    """
    pruned = remove_context_channels(copy.deepcopy(model), ratio, by_l1=True)
    base = getattr(model, "name", None)
    variant = f"{base}_pruned{round(ratio * 100)}"
    if base in PRUNABLE_BASES and round(ratio * 100) == round(DEFAULT_RATIO * 100):
        pruned.name = variant
    pruned.overrides = dict(getattr(model, "overrides", {}))
    pruned.pruning_ratio = ratio
    return pruned


def context_parameters(model: nn.Module) -> int:
    return sum(p.numel() for ssh in context_modules(model) for p in ssh.parameters())


# --------------------------------------------------------------------------------------------
# Report for the notebooks
# --------------------------------------------------------------------------------------------

def pruning_table(model: nn.Module, ratios=(0.0, DEFAULT_RATIO), size: int = 640, flops: bool = True,
                  evaluate=None):
    """Parameters (total and SSH), FLOPs and optionally AP of `model` pruned at each ratio.

    `evaluate(model) -> {"easy", "medium", "hard"}` adds AP columns (pass e.g. a closure over
    `ffcore.eval` on the validation set; a pruned model is normally fine-tuned first).
    """
    import pandas as pd

    rows = []
    for ratio in ratios:
        pruned = prune_context(model, ratio) if ratio > 0 else model
        row = {"model": getattr(model, "name", type(model).__name__), "ratio": ratio,
               "parameters": sum(p.numel() for p in pruned.parameters()),
               "context_parameters": context_parameters(pruned)}
        if flops:
            row["gflops"] = _gflops(pruned, size)
        if evaluate is not None:
            row.update({f"ap_{k}": float(v) for k, v in dict(evaluate(pruned)).items()})
        rows.append(row)
    table = pd.DataFrame(rows)
    table["parameter_reduction"] = 1 - table.parameters / table.parameters.iloc[0]
    return table


def _gflops(model: nn.Module, size: int) -> float:
    """Multiply-adds at size x size, in G (ffcore.complexity.count_flops: one multiply-add = one FLOP)."""
    from ffcore.complexity import count_flops

    return count_flops(model, size, size)["total"] / 1e9
