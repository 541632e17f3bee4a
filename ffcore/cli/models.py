"""`ffcore params` (parameter and FLOP accounting), `ffcore models` (the registry) and `ffcore prune`
(structured SSH pruning)."""

from __future__ import annotations

import json

from ffcore.cli.common import MODEL_HELP, registered_model, write_json

# Kept equal to ffcore.pruning.DEFAULT_RATIO (a test checks it): importing that module here
# would load torch for `--help`.
DEFAULT_PRUNE_RATIO = 0.2


def add_params(sub) -> None:
    p = sub.add_parser("params", help="per-part parameter table (true count and thop's count) and FLOPs",
                       description="Print, for every registered model, a per-part parameter table with the true "
                                   "count next to the count the `thop` profiler reports, and FLOPs at 640x640 "
                                   "counted by fvcore (one multiply-add = one FLOP).")
    p.add_argument("--models", nargs="+", default=None, type=registered_model, metavar="MODEL",
                   help="models to report (default: all registered)")
    p.add_argument("--size", type=int, default=640, help="square input size for FLOPs (default 640)")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count (faster)")
    p.add_argument("--json", dest="json_out", default=None, help="also write the tables to this JSON file")
    p.set_defaults(handler=params_command)


def add_models(sub) -> None:
    p = sub.add_parser("models", help="the registered detectors, their parameter counts and one-part swaps",
                       description="List every registered detector with its true parameter count, the part it "
                                   "swaps when it is a one-part ablation variant (ffcore.models.zoo.ONE_PART_SWAPS) "
                                   "and its description.")
    p.add_argument("--json", dest="json_out", default=None, help="also write the list to this JSON file")
    p.set_defaults(handler=models_command)


def add_prune(sub) -> None:
    p = sub.add_parser("prune", help="structured L1 pruning of the SSH context modules",
                       description="Remove a fraction of every SSH's internal channels (lowest L1 filter norm); "
                                   "print parameters and FLOPs before and after; optionally save the pruned model.")
    p.add_argument("--model", required=True, type=registered_model, help=MODEL_HELP)
    p.add_argument("--weights", default=None)
    p.add_argument("--ratio", type=float, default=DEFAULT_PRUNE_RATIO,
                   help=f"fraction of SSH internal channels removed (default {DEFAULT_PRUNE_RATIO})")
    p.add_argument("--out", default=None, help="write the pruned model as an ffcore checkpoint")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    p.set_defaults(handler=prune_command)


def params_command(models: list[str] | None = None, size: int = 640, no_flops: bool = False,
                   json_out: str | None = None) -> int:
    """`ffcore params`: per-part table for every (or the named) registered model(s)."""
    from ffcore.complexity import count_flops, explain_thop_difference, parameter_counts
    from ffcore.models import create_model, list_models

    report = {}
    flop_column = f"mflops_{size}x{size} (1 MAC = 1 FLOP)"
    for name in models or list_models():
        model = create_model(name)
        table = parameter_counts(model)
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
        print(f"\nwrote {write_json(json_out, json.dumps(report, indent=2))}")
    return 0


def models_command(json_out: str | None = None) -> int:
    """`ffcore models`: one line per registered model (each is built once to count its parameters)."""
    from ffcore.models import create_model, list_models, model_entry
    from ffcore.models.zoo import ONE_PART_SWAPS

    rows = []
    for name in list_models():
        parameters = sum(p.numel() for p in create_model(name).parameters())
        parent, part = ONE_PART_SWAPS.get(name, (None, None))
        rows.append({"model": name, "parameters": parameters, "swap_of": parent, "swapped_part": part,
                     "description": model_entry(name).description})
    width = max(len(row["model"]) for row in rows)
    print(f"{'model':<{width}}  {'parameters':>10}  {'one-part swap':<28}  description")
    for row in rows:
        swap = f"{row['swapped_part']} of {row['swap_of']}" if row["swap_of"] else "-"
        print(f"{row['model']:<{width}}  {row['parameters']:>10,}  {swap:<28}  {row['description']}")
    print(f"{len(rows)} models; {sum(r['swap_of'] is not None for r in rows)} one-part swaps "
          f"(ffcore.models.zoo.ONE_PART_SWAPS)")
    if json_out:
        print(f"wrote {write_json(json_out, json.dumps(rows, indent=2))}")
    return 0


def prune_command(model: str, weights: str | None = None, ratio: float = DEFAULT_PRUNE_RATIO,
                  out: str | None = None, no_flops: bool = False) -> int:
    """`ffcore prune`: prune, print parameters / FLOPs before and after, optionally save a checkpoint."""
    from ffcore.models import create_model, load_pretrained
    from ffcore.pruning import prune_context, pruning_table

    network = load_pretrained(model, weights) if weights else create_model(model)
    table = pruning_table(network, ratios=(0.0, ratio), flops=not no_flops)
    print(table.to_string(index=False, float_format="%.4g"))
    if out:
        from ffcore.checkpoint import save_checkpoint

        pruned = prune_context(network, ratio)
        if pruned.name == model:
            print(f"note: no registered variant for {model} at ratio {ratio}; the checkpoint stores the "
                  f"base name and loads only through build_pruned({model!r}, {ratio})")
        save_checkpoint(out, {"model_name": pruned.name, "model_overrides": pruned.overrides,
                              "state_dict": pruned.state_dict(), "pruning": {"base": model, "ratio": ratio,
                                                                             "criterion": "l1"}})
        print(f"wrote {out} (model {pruned.name})")
    return 0
