"""Latency / memory / size benchmarks and the comparison with published detectors."""

from __future__ import annotations

import pandas as pd

from ffcore.study.context import Study
from ffcore.study.run_profiles import FORK_MODELS

MAIN_MODELS = ("retinaface_mnet025", "featherface_v1", "featherface_v2")
BENCH_COLUMNS = ("model", "backend", "height", "width", "threads", "forward_median_ms", "forward_p10_ms",
                 "forward_p90_ms", "end_to_end_median_ms", "peak_rss_delta_mb", "model_file_mb", "parameters")


def _bench_models() -> list[str]:
    from ffcore.models import list_models

    registered = list_models()
    return [m for m in (*MAIN_MODELS, "featherface_v2_ultra", "featherface_v2_vit", *FORK_MODELS) if m in registered]


def _trained_weights(study: Study, models: list[str]) -> dict[str, str]:
    """Trained checkpoints where they exist (post-processing time depends on the scores); never trains."""
    from ffcore.checkpoint import file_sha256
    from ffcore.eval.detect import DEFAULT_WEIGHTS
    from ffcore.paths import shared_dir

    weights = {}
    for name in models:
        path = study.checkpoint_path(name)
        if path.is_file():
            weights[name] = str(path)
            study.used_checkpoints[name] = file_sha256(path)
        elif name in DEFAULT_WEIGHTS and shared_dir().joinpath(*DEFAULT_WEIGHTS[name]).is_file():
            shared = shared_dir().joinpath(*DEFAULT_WEIGHTS[name])
            weights[name] = str(shared)
            study.used_checkpoints[name] = file_sha256(shared)
    return weights


def benchmark_table(study: Study, models: list[str] | None = None) -> pd.DataFrame:
    """Forward-pass latency (median, p10–p90), end-to-end time, peak memory and model-file size on
    this machine, batch 1, at the profile's sizes and backends (PyTorch eager; ONNX Runtime FP32 /
    INT8 on the synthetic and full profiles)."""
    from ffcore.bench import get_bench_config, run_benchmark

    p = study.profile
    models = list(models or p.bench_models or _bench_models())
    threads = 2 if study.device == "cpu" else 1
    config = get_bench_config("smoke", sizes=tuple((s, s) for s in p.bench_sizes), repeats=p.bench_repeats,
                              threads=(threads,), backends=p.bench_backends)
    weights = _trained_weights(study, models)
    table = run_benchmark(models, config, weights=weights)
    study.cache_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(study.cache_dir / "benchmark_full.csv", index=False)
    shown = table[[c for c in BENCH_COLUMNS if c in table.columns]].round(3)
    largest = max(p.bench_sizes)
    fastest = shown[(shown.height == largest)].sort_values("forward_median_ms").iloc[0]
    study.save_table(shown, "benchmark", checkpoints=list(weights),
                     caption=f"CPU latency and memory on this machine ({threads} threads, batch 1, "
                             f"{p.bench_repeats} timed runs)",
                     headline=f"fastest at {largest}x{largest}: {fastest['model']} ({fastest['backend']}) "
                              f"{fastest['forward_median_ms']:.1f} ms forward (median)",
                     machine="this machine's CPU", threads=threads)
    return shown


def latency_figure(study: Study, name: str = "latency"):
    """Bar chart of the benchmark's forward-pass medians (ffcore.study.bench_figures.latency_figure)."""
    from ffcore.study.bench_figures import latency_figure as draw_latency

    path = study.cache_dir / "benchmark_full.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no benchmark results at {path}: run study.benchmark_table(ctx) first")
    table = pd.read_csv(path)
    size = max(study.profile.bench_sizes)
    fig = draw_latency(table, size=(size, size), batch=1)
    backend = "onnx_fp32" if "onnx_fp32" in set(table.backend) else "torch"
    selected = table[(table.height == size) & (table.backend == backend)]
    headline = "; ".join(f"{r.model} {r.forward_median_ms:.1f} ms" for r in selected.itertuples())
    study.save_figure(fig, name, headline=f"{backend} forward at {size}x{size}: {headline}")
    return fig


def published_comparison_figure(study: Study, setting: str = "hard", name: str | None = None):
    """AP of one setting against parameters: the published lightweight detectors (each labelled with
    its test scale) and ours.

    Our points are stars and, on the synthetic profiles, labelled SYNTHETIC DATA: they are not
    comparable with WIDER FACE numbers."""
    from ffcore.paths import shared_dir
    from ffcore.plotting import MARKERS, PALETTE, new_figure, pretty_name
    from ffcore.study.architecture import model_summary
    from ffcore.study.evaluation import evaluate_run

    source = shared_dir() / "reference" / "published_widerface.csv"
    published = pd.read_csv(source).dropna(subset=["params", f"{setting}_ap"])
    runs = [r for r in ("featherface_v1", "featherface_v2", "featherface_v2_distilled")
            if study.checkpoint_path(r).is_file()]
    ours = []
    for run in runs:
        result = evaluate_run(study, run)
        ours.append({"run": run, "params": model_summary(run.removesuffix("_distilled"),
                                                         study.profile.flops_size)["parameters"],
                     "ap": 100 * float(result.ap[setting])})
    tag = " — SYNTHETIC DATA, not comparable" if study.profile.is_synthetic else ""
    fig, ax = new_figure(aspect=0.8)
    scales = list(dict.fromkeys(published["test_scale"].fillna("not stated")))
    for index, scale in enumerate(scales):
        rows = published[published["test_scale"].fillna("not stated") == scale]
        ax.scatter(rows["params"] / 1e3, rows[f"{setting}_ap"], s=18, color=PALETTE[0], marker=MARKERS[index % len(MARKERS)],
                   alpha=0.85, label=f"published, test scale: {scale}")
        for row in rows.itertuples():
            ax.annotate(row.model, (row.params / 1e3, getattr(row, f"{setting}_ap")), fontsize=5,
                        xytext=(3, 2), textcoords="offset points", color="#333333")
    for index, point in enumerate(ours):
        ax.scatter(point["params"] / 1e3, point["ap"], s=70, marker="*", color=PALETTE[1 + index], edgecolor="black",
                   linewidth=0.4, zorder=3, label=f"ours: {pretty_name(point['run'])}{tag}")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (thousands, log scale)")
    ax.set_ylabel(f"{setting} AP (%)")
    ax.set_ylim(0, 100)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=6, frameon=False)
    ax.set_title(f"WIDER FACE {setting} AP vs parameters (published: validation set, as reported)")
    headline = "; ".join(f"{p['run']}: {p['params']:,} params, {setting} AP {p['ap']:.1f}%{tag}" for p in ours)
    return study.save_figure(fig, name or f"ap_vs_params_published_{setting}", checkpoints=runs,
                             headline=headline or "published points only",
                             published_source="shared/reference/published_widerface.csv",
                             published_rows=len(published))
