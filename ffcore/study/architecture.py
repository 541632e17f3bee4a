"""Architecture tables and figures: parameters (true and thop), FLOPs, claims, output shapes.

Nothing here trains; every number is measured on freshly built registered models, so the
tables are deterministic (notebooks check their outputs under nbval).
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd

from ffcore.runs.context import Study

FLOP_NOTE = "fvcore; one multiply-add = one FLOP"


@lru_cache(maxsize=None)
def _model(name: str):
    from ffcore.models import create_model

    return create_model(name).eval()


@lru_cache(maxsize=None)
def _parts(name: str, size: int) -> pd.DataFrame:
    """Per-part parameters (true, thop) and FLOPs of a registered model, `total` last."""
    import torch

    from ffcore.complexity import count_flops, parameter_counts

    with torch.no_grad():
        model = _model(name)
        table = parameter_counts(model)
        flops = count_flops(model, size, size)
    table["mflops"] = [flops[part] / 1e6 for part in table["part"]]
    return table


def model_summary(name: str, size: int = 640) -> dict:
    """{"parameters", "thop_parameters", "gflops"} of a registered model (no training, deterministic)."""
    total = _parts(name, size).set_index("part").loc["total"]
    return {"parameters": int(total["parameters"]), "thop_parameters": int(total["thop_parameters"]),
            "gflops": float(total["mflops"]) / 1e3}


def _share(values: pd.Series) -> pd.Series:
    total = values.iloc[-1]
    return (100.0 * values / total).round(1)


def parameter_table(study: Study, model: str = "featherface_v1") -> pd.DataFrame:
    """Per-part parameters of a model: true count, thop's count, what thop misses, share of the total."""
    parts = _parts(model, study.profile.flops_size)
    table = parts[["part", "parameters", "thop_parameters", "missed_by_thop"]].copy()
    table.insert(2, "share_%", _share(table["parameters"]))
    total = table.iloc[-1]
    study.save_table(table, f"params_{model}", caption=f"Parameters of {model} per part: true count and thop's count",
                     data_free=True, headline=f"{model}: {total.parameters:,} parameters (thop counts {total.thop_parameters:,})")
    return table


def parameter_count_explanation(study: Study, model: str = "featherface_v1") -> pd.DataFrame:
    """The two counts side by side with the reason they differ (and the published figure, labelled)."""
    from ffcore.complexity import explain_thop_difference

    parts = _parts(model, study.profile.flops_size).set_index("part")
    true_count, thop_count = int(parts.loc["total", "parameters"]), int(parts.loc["total", "thop_parameters"])
    reason = explain_thop_difference(_model(model))
    rows = [
        {"count": "true (sum of p.numel() over model.parameters())", "parameters": true_count,
         "millions": round(true_count / 1e6, 3), "note": "every weight the model multiplies with"},
        {"count": "thop profiler", "parameters": thop_count, "millions": round(thop_count / 1e6, 3),
         "note": reason},
        {"count": "difference", "parameters": true_count - thop_count,
         "millions": round((true_count - thop_count) / 1e6, 3), "note": "weights thop does not see"},
    ]
    published = _published_row("FeatherFace (paper)")
    if published is not None and model == "featherface_v1":
        rows.append({"count": "published (claim, not measured)", "parameters": int(published["params"]),
                     "millions": round(published["params"] / 1e6, 3),
                     "note": f"{published['source']}: thop's count rounded"})
    table = pd.DataFrame(rows)
    study.save_table(table, f"param_counts_{model}", caption=f"{model}: true parameter count vs thop's count",
                     data_free=True, headline=f"{model}: true {true_count:,} vs thop {thop_count:,} ({reason})")
    return table


def _published_row(model: str):
    from ffcore.paths import shared_dir

    path = shared_dir() / "reference" / "published_widerface.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    rows = table[table["model"] == model]
    return None if rows.empty else rows.iloc[0]


def flops_table(study: Study, models: list[str]) -> pd.DataFrame:
    """Parameters and FLOPs (multiply-adds) at the profile's FLOP size (640×640: the papers' setting)."""
    size = study.profile.flops_size
    rows = []
    for name in models:
        summary = model_summary(name, size)
        rows.append({"model": name, "parameters": summary["parameters"], "thop_parameters": summary["thop_parameters"],
                     f"GFLOPs_{size}": round(summary["gflops"], 3)})
    table = pd.DataFrame(rows)
    study.save_table(table, "flops_" + "_vs_".join(models), caption=f"Parameters and FLOPs at {size}x{size} ({FLOP_NOTE})",
                     data_free=True, headline="; ".join(f"{r['model']}: {r[f'GFLOPs_{size}']:.3f} GFLOPs" for r in rows),
                     flops_counter=FLOP_NOTE)
    return table


def compare_parts_table(study: Study, first: str = "featherface_v1", second: str = "featherface_v2") -> pd.DataFrame:
    """Two models part by part: parameters, share of the total, FLOPs, and the change."""
    size = study.profile.flops_size
    a, b = _parts(first, size).set_index("part"), _parts(second, size).set_index("part")
    parts = [p for p in a.index if p in b.index]
    table = pd.DataFrame({
        "part": parts,
        f"{first} params": [int(a.loc[p, "parameters"]) for p in parts],
        f"{first} share_%": _share(a.loc[parts, "parameters"]).to_list(),
        f"{first} MFLOPs": [round(a.loc[p, "mflops"], 1) for p in parts],
        f"{second} params": [int(b.loc[p, "parameters"]) for p in parts],
        f"{second} share_%": _share(b.loc[parts, "parameters"]).to_list(),
        f"{second} MFLOPs": [round(b.loc[p, "mflops"], 1) for p in parts],
    })
    change = (table[f"{second} params"] - table[f"{first} params"]) / table[f"{first} params"].where(
        table[f"{first} params"] != 0)
    table["params change_%"] = (100 * change).round(1)
    total_a, total_b = int(a.loc["total", "parameters"]), int(b.loc["total", "parameters"])
    study.save_table(table, f"parts_{first}_vs_{second}",
                     data_free=True, caption=f"{first} vs {second} per part (FLOPs at {size}x{size}, {FLOP_NOTE})",
                     headline=f"{second} has {total_b:,} parameters vs {total_a:,} for {first} "
                              f"({100 * (total_b - total_a) / total_a:+.1f}%); GFLOPs "
                              f"{a.loc['total', 'mflops'] / 1e3:.3f} -> {b.loc['total', 'mflops'] / 1e3:.3f}")
    return table


def parts_figure(study: Study, models: list[str]):
    """Stacked bars: parameters and FLOPs per part for each model."""
    import numpy as np

    from ffcore.report.plotting import PALETTE, new_figure, pretty_name

    size = study.profile.flops_size
    tables = {m: _parts(m, size).set_index("part").drop(index="total") for m in models}
    parts = list(dict.fromkeys(p for t in tables.values() for p in t.index))
    fig, axes = new_figure(ncols=2, aspect=0.45)
    for ax, column, scale, label in ((axes[0, 0], "parameters", 1e3, "parameters (thousands)"),
                                     (axes[0, 1], "mflops", 1e3, f"GFLOPs at {size}x{size}")):
        left = np.zeros(len(models))
        for index, part in enumerate(parts):
            values = np.array([tables[m].loc[part, column] / scale if part in tables[m].index else 0.0
                               for m in models])
            ax.barh(range(len(models)), values, left=left, color=PALETTE[index % len(PALETTE)],
                    edgecolor="white", linewidth=0.5, label=part.replace("_", " "))
            left += values
        for y, total in enumerate(left):
            ax.text(total, y, f" {total:,.0f}" if column == "parameters" else f" {total:.2f}", va="center", fontsize=7)
        ax.set_yticks(range(len(models)))
        ax.set_yticklabels([pretty_name(m) for m in models])
        ax.invert_yaxis()
        ax.set_xlabel(label)
        ax.margins(x=0.18)
    axes[0, 1].set_yticklabels([])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, frameon=False)
    totals = {m: model_summary(m, size)["parameters"] for m in models}
    return study.save_figure(fig, "parts_" + "_vs_".join(models),
                             data_free=True, headline="; ".join(f"{m}: {v:,} parameters" for m, v in totals.items()),
                             flops_counter=FLOP_NOTE)


def claims_table(study: Study, benchmark: pd.DataFrame | None = None, name: str | None = None) -> pd.DataFrame:
    """Every parameter, FLOP, memory and latency claim of the seed documents (quoted, with file and
    line) beside the figure measured on the registered model, or the parts of it, the claim is about.

    Parameters: true count and thop's count. FLOPs: fvcore at the profile's FLOP size (one
    multiply-add = one FLOP). Model size: the FP32 state_dict file. INT8 size, latency, FPS and
    memory in use: the rows of `benchmark` (a `ffcore.bench.run_benchmark` table, as notebook 05
    makes) at that size and batch 1. Nothing is timed here: without a benchmark (notebook 02) the
    runtime claims say "not measured" and the table is deterministic, written as
    `seed_claims_vs_measured`; with one (notebook 05) it is written as `seed_claims_vs_benchmark`,
    so each notebook writes its own artifact (`name` overrides either). A claimed device (a phone)
    is in the "seed's conditions" column: the measurement is never on that device.
    """
    import io

    import torch

    from ffcore.models import list_models
    from ffcore.paths import shared_dir
    from ffcore.study.claims import QUANTITIES, SEED_CLAIMS, compare, locate, parse_value

    registered = set(list_models())
    size = study.profile.flops_size
    seeds = shared_dir() / "seeds"

    def bench_rows(table: pd.DataFrame | None, backend: str) -> dict[str, pd.Series]:
        if table is None or table.empty:
            return {}
        rows = table[(table["backend"] == backend) & (table["height"] == size) & (table["width"] == size)]
        if "batch" in rows.columns:      # benchmark_table's shown columns leave it out: its runs are batch 1
            rows = rows[rows["batch"] == 1]
        return {model: group.iloc[0] for model, group in rows.groupby("model")}

    # The run's benchmark is the only timing: a model it did not time at this size is reported as
    # not measured rather than timed here (two timings would disagree, and a table without a
    # benchmark stays the same from one call to the next).
    torch_rows, int8_rows = bench_rows(benchmark, "torch"), bench_rows(benchmark, "onnx_int8")

    def state_dict_mb(name: str) -> float:
        buffer = io.BytesIO()
        torch.save(_model(name).state_dict(), buffer)
        return buffer.getbuffer().nbytes / 1e6

    def measure(claim) -> tuple[float | None, float | None, str]:
        """(measured, thop's count or None, how it was measured)."""
        if claim.quantity == "parameters":
            parts = _parts(claim.model, size).set_index("part")
            if not claim.parts:
                return int(parts.loc["total", "parameters"]), int(parts.loc["total", "thop_parameters"]), "true count"
            model = _model(claim.model)
            true_count = sum(p.numel() for path in claim.parts for p in model.get_submodule(path).parameters())
            top_level = all(path in parts.index for path in claim.parts)
            thop_count = int(sum(parts.loc[path, "thop_parameters"] for path in claim.parts)) if top_level else None
            return true_count, thop_count, "true count of " + " + ".join(claim.parts)
        if claim.quantity == "gflops":
            return round(model_summary(claim.model, size)["gflops"], 3), None, f"fvcore at {size}x{size}, {FLOP_NOTE}"
        if claim.quantity == "weights_mb":
            return round(state_dict_mb(claim.model), 3), None, "FP32 state_dict file"
        if claim.quantity == "int8_mb":
            row = int8_rows.get(claim.model)
            if row is None:
                return None, None, "not measured here: pass a benchmark table with onnx_int8 rows (notebook 05)"
            return round(float(row["model_file_mb"]), 3), None, "ONNX Runtime INT8 file (benchmark)"
        row = torch_rows.get(claim.model)
        if row is None and benchmark is None:
            return None, None, "not measured here: pass a run's benchmark table (notebook 05 does)"
        if row is None:
            sizes = sorted({f"{h}x{w}" for h, w in zip(benchmark["height"], benchmark["width"])})
            return None, None, (f"not measured: this run's benchmark timed no PyTorch {claim.model} at {size}x{size} "
                                f"(its sizes: {', '.join(sizes)})")
        how = (f"PyTorch eager, this machine's CPU, {int(row['threads'])} thread(s), batch 1, {size}x{size}"
               + (f", median of {int(row['repeats'])}" if "repeats" in row.index else ", median"))
        if claim.quantity == "latency_ms":
            return round(float(row["forward_median_ms"]), 2), None, how
        if claim.quantity == "fps":
            return round(1000.0 / float(row["forward_median_ms"]), 2), None, how
        return round(float(row["peak_rss_delta_mb"]), 1), None, "peak RSS increase during the forward; " + how

    rows, off = [], 0
    for claim in SEED_CLAIMS:
        line = locate(claim, seeds)
        row = {"model": claim.model, "quantity": QUANTITIES[claim.quantity],
               "counted": claim.label or ("whole model" if not claim.parts else " + ".join(claim.parts)),
               "claim (quoted)": claim.quote,
               "source": f"{claim.source}:{line}" if line else f"{claim.source} (not found)",
               "seed's conditions": claim.note, "measured": pd.NA, "measured thop": pd.NA, "measured how": "",
               "claim vs measured": "model not registered", "claim vs thop": ""}
        if claim.model in registered:
            measured, thop_count, how = measure(claim)
            row.update({"measured": measured, "measured thop": thop_count if thop_count is not None else pd.NA,
                        "measured how": how, "claim vs measured": compare(claim.quote, measured)})
            if thop_count is not None:
                row["claim vs thop"] = compare(claim.quote, thop_count)
            low, high, _ = parse_value(claim.quote)
            if measured is not None:
                if low is not None and low == high:
                    off += abs(low - measured) > 0.1 * max(abs(measured), 1e-9)
                else:
                    off += "OUTSIDE" in row["claim vs measured"]
        rows.append(row)
    table = pd.DataFrame(rows)
    table["measured thop"] = table["measured thop"].astype("Int64")
    v1 = model_summary("featherface_v1", size)
    v1_counts = [parse_value(c.quote)[0] for c in SEED_CLAIMS
                 if c.model == "featherface_v1" and c.quantity == "parameters" and not c.parts]
    name = name or ("seed_claims_vs_measured" if benchmark is None else "seed_claims_vs_benchmark")
    study.save_table(table, name, data_free=True,
                     # the page shows the claim against the measurement; thop and the how stay in the CSV
                     columns=["model", "quantity", "counted", "claim (quoted)", "measured", "claim vs measured",
                              "source"],
                     caption="Parameter, FLOP, memory and latency claims of the seed documents (quoted, file:line) "
                             "vs measured on the code",
                     headline=f"{len(table)} claims; {off} differ from the measurement by more than 10% or fall "
                              f"outside their bound; V1 claims range {min(v1_counts):,.0f}-{max(v1_counts):,.0f} "
                              f"parameters, measured {v1['parameters']:,} (thop {v1['thop_parameters']:,})")
    return table


def shape_compatibility(study: Study, teacher: str = "featherface_v1", student: str = "featherface_v2",
                        size: int = 640) -> pd.DataFrame:
    """Teacher and student outputs (priors, loc / conf / landm, P3–P5 features) at size×size."""
    from ffcore.study.shapes import shape_compatibility_table

    table = shape_compatibility_table(_model(teacher), _model(student), teacher, student, size)
    matches = int(table["match"].sum())
    study.save_table(table, f"shapes_{teacher}_vs_{student}",
                     data_free=True, caption=f"Output shapes of {teacher} (teacher) and {student} (student) at {size}x{size}",
                     headline=f"{matches}/{len(table)} outputs identical; priors "
                              f"{table.iloc[0][teacher]} vs {table.iloc[0][student]}")
    return table


def efficiency_table(study: Study, models: list[str] | None = None) -> pd.DataFrame:
    """Parameters (true, thop), FP32 weight size and FLOPs of the main models (deterministic)."""
    from ffcore.models import list_models

    registered = list_models()
    models = models or [m for m in ("retinaface_mnet025", "featherface_v1", "featherface_v2",
                                    "featherface_v2_ultra", "featherface_v2_vit") if m in registered]
    size = study.profile.flops_size
    rows = []
    for name in models:
        summary = model_summary(name, size)
        rows.append({"model": name, "parameters": summary["parameters"], "thop_parameters": summary["thop_parameters"],
                     "fp32_weights_MB": round(summary["parameters"] * 4 / 1e6, 3),
                     f"GFLOPs_{size}": round(summary["gflops"], 3)})
    table = pd.DataFrame(rows)
    smallest = table.loc[table["parameters"].idxmin()]
    study.save_table(table, "efficiency", caption=f"Model size and FLOPs at {size}x{size} ({FLOP_NOTE})",
                     data_free=True, headline=f"smallest: {smallest['model']} with {smallest['parameters']:,} parameters, "
                              f"{smallest[f'GFLOPs_{size}']:.3f} GFLOPs")
    return table
