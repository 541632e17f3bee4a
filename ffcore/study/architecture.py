"""Architecture tables and figures: parameters (true and thop), FLOPs, claims, output shapes.

Nothing here trains; every number is measured on freshly built registered models, so the
tables are deterministic (notebooks check their outputs under nbval).
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd

from ffcore.study.context import Study

FLOP_NOTE = "fvcore; one multiply-add = one FLOP"


@lru_cache(maxsize=None)
def _model(name: str):
    from ffcore.models import create_model

    return create_model(name).eval()


@lru_cache(maxsize=None)
def _parts(name: str, size: int) -> pd.DataFrame:
    """Per-part parameters (true, thop) and FLOPs of a registered model, `total` last."""
    import torch

    from ffcore.profile import count_flops, parameter_table

    with torch.no_grad():
        model = _model(name)
        table = parameter_table(model)
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
                     headline=f"{model}: {total.parameters:,} parameters (thop counts {total.thop_parameters:,})")
    return table


def parameter_count_explanation(study: Study, model: str = "featherface_v1") -> pd.DataFrame:
    """The two counts side by side with the reason they differ (and the published figure, labelled)."""
    from ffcore.profile import explain_thop_difference

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
                     headline=f"{model}: true {true_count:,} vs thop {thop_count:,} ({reason})")
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
                     headline="; ".join(f"{r['model']}: {r[f'GFLOPs_{size}']:.3f} GFLOPs" for r in rows),
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
                     caption=f"{first} vs {second} per part (FLOPs at {size}x{size}, {FLOP_NOTE})",
                     headline=f"{second} has {total_b:,} parameters vs {total_a:,} for {first} "
                              f"({100 * (total_b - total_a) / total_a:+.1f}%); GFLOPs "
                              f"{a.loc['total', 'mflops'] / 1e3:.3f} -> {b.loc['total', 'mflops'] / 1e3:.3f}")
    return table


def parts_figure(study: Study, models: list[str]):
    """Stacked bars: parameters and FLOPs per part for each model."""
    import numpy as np

    from ffcore.plotting import PALETTE, new_figure, pretty_name

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
                             headline="; ".join(f"{m}: {v:,} parameters" for m, v in totals.items()),
                             flops_counter=FLOP_NOTE)


def claims_table(study: Study) -> pd.DataFrame:
    """Parameter counts claimed in the seed documents (quoted, with file and line) next to the measured ones."""
    from ffcore.models import list_models
    from ffcore.paths import shared_dir
    from ffcore.study.claims import SEED_CLAIMS, locate, parse_count

    registered = set(list_models())
    seeds = shared_dir() / "seeds"
    rows = []
    for claim in SEED_CLAIMS:
        line = locate(claim, seeds)
        claimed = parse_count(claim.quote)
        row = {"model": claim.model, "claim (quoted)": claim.quote,
               "source": f"{claim.source}:{line}" if line else f"{claim.source} (not found)",
               "measured true": pd.NA, "measured thop": pd.NA, "claim nearest to": "model not registered"}
        if claim.model in registered:
            summary = model_summary(claim.model, study.profile.flops_size)
            true_count, thop_count = summary["parameters"], summary["thop_parameters"]
            row.update({"measured true": true_count, "measured thop": thop_count})
            nearest = min((("true count", true_count), ("thop count", thop_count)), key=lambda c: abs(c[1] - claimed))
            row["claim nearest to"] = f"{nearest[0]} ({100 * (claimed - nearest[1]) / nearest[1]:+.1f}%)"
        rows.append(row)
    table = pd.DataFrame(rows)
    table["measured true"] = table["measured true"].astype("Int64")
    table["measured thop"] = table["measured thop"].astype("Int64")
    v1 = model_summary("featherface_v1", study.profile.flops_size)
    study.save_table(table, "seed_claims_vs_measured",
                     caption="Parameter counts claimed in the seed documents (quoted) vs measured on the code",
                     headline=f"seed claims for V1 range {min(parse_count(c.quote) for c in SEED_CLAIMS if c.model == 'featherface_v1'):,}"
                              f"-{max(parse_count(c.quote) for c in SEED_CLAIMS if c.model == 'featherface_v1'):,}; "
                              f"measured {v1['parameters']:,} (thop {v1['thop_parameters']:,})")
    return table


def shape_compatibility(study: Study, teacher: str = "featherface_v1", student: str = "featherface_v2",
                        size: int = 640) -> pd.DataFrame:
    """Teacher and student outputs (priors, loc / conf / landm, P3–P5 features) at size×size."""
    from ffcore.study.shapes import shape_compatibility_table

    table = shape_compatibility_table(_model(teacher), _model(student), teacher, student, size)
    matches = int(table["match"].sum())
    study.save_table(table, f"shapes_{teacher}_vs_{student}",
                     caption=f"Output shapes of {teacher} (teacher) and {student} (student) at {size}x{size}",
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
                     headline=f"smallest: {smallest['model']} with {smallest['parameters']:,} parameters, "
                              f"{smallest[f'GFLOPs_{size}']:.3f} GFLOPs")
    return table
