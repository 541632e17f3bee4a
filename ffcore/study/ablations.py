"""Ablations: FeatherFace V1 with one V2 part swapped in at a time, plus the other V2 variants.

The variants are registered models (`featherface_v1_<part>`, see ffcore.models.zoo); each is
trained with the profile's recipe and length, exactly like V1 and V2.
"""

from __future__ import annotations

import pandas as pd

from ffcore.study.context import Study

BASELINE = "featherface_v1"
ABLATION_PREFIX = "featherface_v1_"
# Further variants shown after the one-part swaps when they are registered.
EXTRA_VARIANTS = ("featherface_v2", "featherface_v2_ultra", "featherface_v2_vit")


def ablation_models() -> list[str]:
    """V1, every registered one-part swap, then V2 and its registered variants (pruned ones included)."""
    from ffcore.models import list_models

    registered = list_models()
    swaps = [m for m in registered if m.startswith(ABLATION_PREFIX)]
    extras = [m for m in EXTRA_VARIANTS if m in registered]
    extras += [m for m in registered if "pruned" in m and m not in swaps and m not in extras]
    return [BASELINE, *swaps, *extras]


def _description(name: str) -> str:
    from ffcore.models import model_entry

    return model_entry(name).description


def ablation_variants(study: Study) -> pd.DataFrame:
    """The variants with what each changes, parameters (true, thop) and FLOPs; no training (deterministic)."""
    from ffcore.study.architecture import model_summary

    size = study.profile.flops_size
    base = model_summary(BASELINE, size)
    rows = []
    for name in ablation_models():
        summary = model_summary(name, size)
        rows.append({"model": name, "change": _description(name), "parameters": summary["parameters"],
                     "params vs V1 %": round(100 * (summary["parameters"] - base["parameters"]) / base["parameters"], 1),
                     "thop_parameters": summary["thop_parameters"], f"GFLOPs_{size}": round(summary["gflops"], 3)})
    table = pd.DataFrame(rows)
    smallest = table.iloc[1:].loc[table["parameters"].iloc[1:].idxmin()] if len(table) > 1 else table.iloc[0]
    study.save_table(table, "ablation_variants", caption=f"Ablation variants: parameters and FLOPs at {size}x{size}",
                     headline=f"{len(table)} variants; largest saving {smallest['model']} "
                              f"({smallest['params vs V1 %']:+.1f}% parameters)")
    return table


def ablation_table(study: Study) -> pd.DataFrame:
    """Every variant trained (or loaded) and evaluated: parameters, FLOPs and AP per row."""
    from ffcore.study.architecture import model_summary
    from ffcore.study.evaluation import ap_frame
    from ffcore.study.training import train_or_load

    size = study.profile.flops_size
    models = ablation_models()
    for name in models:
        # V1 and V2 are the runs of notebooks 01 and 03; force retrains only what this notebook owns
        train_or_load(study, name, force=study.force and name not in (BASELINE, "featherface_v2"))
    rows = []
    for name in models:
        summary = model_summary(name, size)
        row = {"model": name, "parameters": summary["parameters"], f"GFLOPs_{size}": round(summary["gflops"], 3)}
        try:
            aps = ap_frame(study, [name]).iloc[0]
            row.update({k: aps[k] for k in ("AP easy %", "AP medium %", "AP hard %")}, note="")
        except Exception as exc:
            if name == BASELINE:
                raise
            # a variant that cannot be evaluated stays in the table, with the reason, instead of vanishing
            row.update({"AP easy %": float("nan"), "AP medium %": float("nan"), "AP hard %": float("nan"),
                        "note": f"not evaluated: {type(exc).__name__}: {exc}"[:160]})
        row["checkpoint"] = study.used_checkpoints[name]
        rows.append(row)
    table = pd.DataFrame(rows)
    table["hard AP vs V1"] = (table["AP hard %"] - table.loc[0, "AP hard %"]).round(2)
    best = table.loc[table["AP hard %"].idxmax()]
    failed = int(table["AP hard %"].isna().sum())
    study.save_table(table, "ablations", checkpoints=models, test_scale=str(study.profile.eval_scale),
                     caption=f"Ablations from FeatherFace V1 (AP at test scale {study.profile.eval_scale})",
                     headline=f"best hard AP {best['AP hard %']:.1f}% ({best['model']}, {best['parameters']:,} params); "
                              f"V1 {table.loc[0, 'AP hard %']:.1f}%"
                              + (f"; {failed} variant(s) NOT evaluated (see note)" if failed else ""))
    return table


def ablation_figure(study: Study, name: str = "ablations"):
    """Parameters and hard AP of every variant, side by side."""
    from ffcore.plotting import PALETTE, new_figure

    table = pd.read_csv(study.tables_dir / "ablations.csv", comment="#")
    models = list(table["model"])
    fig, axes = new_figure(ncols=2, aspect=0.5)
    labels = [m.replace("featherface_", "").replace("v1_", "V1 + ") for m in models]
    colours = [PALETTE[0] if m.startswith(ABLATION_PREFIX) or m == BASELINE else PALETTE[1] for m in models]
    axes[0, 0].barh(labels, table["parameters"] / 1e3, color=colours)
    axes[0, 0].set_xlabel("parameters (thousands)")
    axes[0, 0].invert_yaxis()
    bars = axes[0, 1].barh(labels, table["AP hard %"], color=colours)
    axes[0, 1].bar_label(bars, fmt="%.1f", fontsize=6, padding=2)
    axes[0, 1].set_xlabel("hard AP (%)")
    axes[0, 1].set_yticklabels([])
    axes[0, 1].invert_yaxis()
    return study.save_figure(fig, name, checkpoints=models,
                             headline=f"{len(models)} variants; hard AP range {table['AP hard %'].min():.1f}-"
                                      f"{table['AP hard %'].max():.1f}%")
