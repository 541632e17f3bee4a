"""Latency / memory / size benchmarks and the comparison with published detectors."""

from __future__ import annotations

import pandas as pd

from ffcore.study.context import Study

MAIN_MODELS = ("retinaface_mnet025", "featherface_v1", "featherface_v2")
BENCH_COLUMNS = ("model", "backend", "height", "width", "threads", "forward_median_ms", "forward_p10_ms",
                 "forward_p90_ms", "end_to_end_median_ms", "peak_rss_delta_mb", "model_file_mb", "parameters")


def _bench_models() -> list[str]:
    from ffcore.models import list_models

    registered = list_models()
    return [m for m in (*MAIN_MODELS, "featherface_v2_ultra", "featherface_v2_vit") if m in registered]


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
    this machine: PyTorch eager and ONNX Runtime FP32, batch 1, at the profile's sizes."""
    from ffcore.bench import get_bench_config, run_benchmark

    models = list(models or _bench_models())
    p = study.profile
    threads = 2 if study.device == "cpu" else 1
    config = get_bench_config("smoke", sizes=tuple((s, s) for s in p.bench_sizes), repeats=p.bench_repeats,
                              threads=(threads,))
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
    """Bar chart of the benchmark's forward-pass medians (ffcore.bench.latency_figure)."""
    from ffcore.bench import latency_figure as draw_latency
    from ffcore.plotting import show

    path = study.cache_dir / "benchmark_full.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no benchmark results at {path}: run study.benchmark_table(ctx) first")
    table = pd.read_csv(path)
    size = max(study.profile.bench_sizes)
    fig = draw_latency(table, size=(size, size), batch=1)
    selected = table[(table.height == size) & (table.backend == "onnx_fp32")]
    headline = "; ".join(f"{r.model} {r.forward_median_ms:.1f} ms" for r in selected.itertuples()) or None
    study.save_figure(fig, name, headline=f"ONNX FP32 forward at {size}x{size}: {headline}")
    return show(fig)


def published_comparison_figure(study: Study, name: str = "ap_vs_params_published"):
    """AP against parameters: published lightweight detectors (their test scale in the label) and ours.

    Our points are marked differently and, on the synthetic profiles, labelled SYNTHETIC: they
    are not comparable with WIDER FACE numbers."""
    import numpy as np

    from ffcore.paths import shared_dir
    from ffcore.plotting import PALETTE, new_figure, pretty_name
    from ffcore.study.architecture import model_summary
    from ffcore.study.evaluation import evaluate_run

    published = pd.read_csv(shared_dir() / "reference" / "published_widerface.csv").dropna(subset=["params"])
    runs = [r for r in ("featherface_v1", "featherface_v2", "featherface_v2_distilled")
            if study.checkpoint_path(r).is_file()]
    ours = []
    for run in runs:
        result = evaluate_run(study, run)
        model = run.removesuffix("_distilled")
        ours.append({"run": run, "params": model_summary(model, study.profile.flops_size)["parameters"],
                     **{s: 100 * float(result.ap[s]) for s in ("easy", "medium", "hard")}})
    fig, axes = new_figure(ncols=3, aspect=0.42)
    tag = " (SYNTHETIC DATA)" if study.profile.is_synthetic else ""
    for ax, setting in zip(axes[0], ("easy", "medium", "hard")):
        column = f"{setting}_ap"
        ax.scatter(published["params"] / 1e3, published[column], s=14, color=PALETTE[0], label="published (WIDER FACE val)")
        for row in published.itertuples():
            scale = row.test_scale if isinstance(row.test_scale, str) else "scale n/a"
            ax.annotate(f"{row.model.split(' (')[0]}\n[{scale}]", (row.params / 1e3, getattr(row, column)),
                        fontsize=4, xytext=(2, 2), textcoords="offset points", color="#333333")
        for index, point in enumerate(ours):
            ax.scatter(point["params"] / 1e3, point[setting], s=40, marker="*", color=PALETTE[1 + index],
                       edgecolor="black", linewidth=0.4, zorder=3, label=f"ours: {pretty_name(point['run'])}{tag}")
        ax.set_xscale("log")
        ax.set_xlabel("parameters (thousands, log)")
        ax.set_title(f"{setting}")
        ax.set_ylim(0, 100)
    axes[0, 0].set_ylabel("AP (%)")
    axes[0, 0].legend(loc="lower left", fontsize=5)
    fig.suptitle("AP vs parameters; published points give their test scale in brackets" + (
        ". Our points were computed on SYNTHETIC DATA and are not comparable." if tag else ""), fontsize=8)
    headline = "; ".join(f"{p['run']}: {p['params']:,} params, hard {p['hard']:.1f}%{tag}" for p in ours)
    return study.save_figure(fig, name, checkpoints=runs, headline=headline or "published points only",
                             published_source="shared/reference/published_widerface.csv",
                             published_rows=int(np.sum(published["params"].notna())))
