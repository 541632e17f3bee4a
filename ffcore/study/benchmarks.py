"""Latency / memory / size benchmarks and the comparison with published detectors."""

from __future__ import annotations

import pandas as pd

from ffcore.runs.context import Study
from ffcore.runs.plan import teacher_display_name
from ffcore.runs.profiles import FORK_MODELS

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


MEASUREMENT_FILE = "benchmark_full.csv"


def benchmark_table(study: Study, models: list[str] | None = None) -> pd.DataFrame:
    """Forward-pass latency (median, p10–p90), end-to-end time, peak memory and model-file size on
    this machine, batch 1, at the profile's sizes and backends (PyTorch eager; ONNX Runtime FP32 /
    INT8 on the synthetic and full profiles).

    This is the run's one timing: it writes every row to results/<profile>/cache/benchmark_full.csv,
    and the latency figure, the claims table and the summary read that file (`measured_benchmark`)
    instead of timing the models again, so every artifact quotes the same milliseconds."""
    from ffcore.bench import get_bench_config, run_benchmark

    p = study.profile
    models = list(models or p.bench_models or _bench_models())
    threads = 2 if study.device == "cpu" else 1
    config = get_bench_config("smoke", sizes=tuple((s, s) for s in p.bench_sizes), repeats=p.bench_repeats,
                              threads=(threads,), backends=p.bench_backends)
    weights = _trained_weights(study, models)
    table = run_benchmark(models, config, weights=weights)
    study.cache_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(study.cache_dir / MEASUREMENT_FILE, index=False)
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


def measured_benchmark(study: Study) -> pd.DataFrame:
    """Every row of this run's timing (written by `benchmark_table`), read back rather than re-measured."""
    path = study.cache_dir / MEASUREMENT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no benchmark results at {path}: run study.benchmark_table(ctx) first "
                                "(it times the models once; the other artifacts read its file)")
    return pd.read_csv(path)


def latency_figure(study: Study, name: str = "latency"):
    """Bar chart of the benchmark's forward-pass medians (ffcore.study.bench_figures.draw_latency), from this
    run's one timing. No data stamp: a forward pass of random input involves no dataset."""
    from ffcore.study.bench_figures import draw_latency

    table = measured_benchmark(study)
    size = max(study.profile.bench_sizes)
    fig = draw_latency(table, size=(size, size), batch=1)
    backend = "onnx_fp32" if "onnx_fp32" in set(table.backend) else "torch"
    selected = table[(table.height == size) & (table.backend == backend)]
    headline = "; ".join(f"{r.model} {r.forward_median_ms:.1f} ms" for r in selected.itertuples())
    # data_free: the timing runs on random input, so the figure carries no dataset stamp; the weights
    # timed (trained where they exist: post-processing depends on the scores) stay in the sidecar
    study.save_figure(fig, name, headline=f"{backend} forward at {size}x{size}: {headline}", data_free=True,
                      weights={m: study.used_checkpoints.get(m, "untrained")
                               for m in [*_trained_weights(study, list(dict.fromkeys(table.model)))]},
                      source=f"results/{study.profile.name}/cache/{MEASUREMENT_FILE} (benchmark_table)")
    return fig


# Published rows that are one of our models, drawn at that model's true parameter count (the paper's
# count is thop's, which misses the deformable convolutions and free parameters: see `efficiency`).
PUBLISHED_AS_OURS = {"FeatherFace (paper)": "featherface_v1"}
# Print size: the figure is drawn at the text width, so these are the sizes on the page (>= 8 pt).
LABEL_POINTS = 8


def draw_published_comparison(published: pd.DataFrame, ours: list[dict], setting: str, ours_data: str,
                              true_counts: dict[str, int]):
    """AP of one setting against parameters: every published row (a circle family, marked "published")
    and our models (stars), one point per model. `ours`: {"run", "label", "params", "ap"} per model;
    `ours_data`: what our points were measured on ("SYNTHETIC data", "WIDER FACE val");
    `true_counts`: our model -> true parameter count, where a published row is one of ours."""
    from ffcore.report.plotting import MARKERS, PALETTE, model_styles, new_figure

    published = published.copy()
    for row, model in PUBLISHED_AS_OURS.items():
        if model in true_counts:
            published.loc[published["model"] == row, "params"] = true_counts[model]
    fig, ax = new_figure(aspect=0.8)
    scales = list(dict.fromkeys(published["test_scale"].fillna("not stated")))
    for index, scale in enumerate(scales):
        rows = published[published["test_scale"].fillna("not stated") == scale]
        ax.scatter(rows["params"] / 1e3, rows[f"{setting}_ap"], s=18, color=PALETTE[0], marker=MARKERS[index % len(MARKERS)],
                   alpha=0.85, label=f"published (test scale: {scale})")
    styles = model_styles(p["run"] for p in ours)
    for point in ours:
        ax.scatter(point["params"] / 1e3, point["ap"], s=70, marker="*", color=styles[point["run"]]["color"],
                   edgecolor="black", linewidth=0.4, zorder=3, label=f"ours: {point['label']}")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (thousands, log scale; true counts)", fontsize=LABEL_POINTS)
    ax.set_ylabel(f"{setting} AP (%)", fontsize=LABEL_POINTS)
    ax.tick_params(labelsize=LABEL_POINTS)
    ax.set_ylim(0, 100)
    # above the axes (the provenance stamp goes below the figure): never over a point
    # one column: two columns of these labels are wider than the text width
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.01), ncol=1, fontsize=LABEL_POINTS, frameon=False)
    # two lines: one line of this title is wider than the text width, and the saved figure would grow
    # past it, so the whole figure (its 8 pt labels with it) would print shrunk
    fig.suptitle(f"{setting} AP against parameters: published detectors on WIDER FACE val (as reported);\n"
                 f"ours (stars) on {ours_data}", fontsize=LABEL_POINTS + 1)
    params = [*(published["params"] / 1e3), *(p["params"] / 1e3 for p in ours)]
    if params:   # room beside the outermost points for their names, which stay inside the axes
        ax.set_xlim(min(params) / 2.5, max(params) * 2.5)
    _label_points(ax, [(row.model, row.params / 1e3, getattr(row, f"{setting}_ap")) for row in published.itertuples()],
                  fontsize=LABEL_POINTS)
    return fig


def published_comparison_figure(study: Study, setting: str = "hard", name: str | None = None):
    """AP of one setting against parameters: the published lightweight detectors (each labelled with
    its test scale) and ours (`draw_published_comparison`).

    Our points are stars and, on the synthetic profiles, the title says SYNTHETIC data: they are not
    comparable with WIDER FACE numbers."""
    from ffcore.paths import shared_dir
    from ffcore.report.plotting import pretty_name
    from ffcore.study.architecture import model_summary
    from ffcore.study.evaluation import evaluate_run

    source = shared_dir() / "reference" / "published_widerface.csv"
    published = pd.read_csv(source).dropna(subset=["params", f"{setting}_ap"])
    runs = [r for r in ("featherface_v1", "featherface_v2", "featherface_v2_distilled")
            if study.checkpoint_path(r).is_file()]
    ours = []
    for run in runs:
        result = evaluate_run(study, run)
        ours.append({"run": run, "label": pretty_name(run, teacher=teacher_display_name(study.profile)),
                     "params": model_summary(run.removesuffix("_distilled"), study.profile.flops_size)["parameters"],
                     "ap": 100 * float(result.ap[setting])})
    true_counts = {model: model_summary(model, study.profile.flops_size)["parameters"]
                   for model in PUBLISHED_AS_OURS.values()}
    ours_data = "SYNTHETIC data, not comparable" if study.profile.is_synthetic else "WIDER FACE val"
    fig = draw_published_comparison(published, ours, setting, ours_data, true_counts)
    tag = " — SYNTHETIC DATA, not comparable" if study.profile.is_synthetic else ""
    headline = "; ".join(f"{p['run']}: {p['params']:,} params, {setting} AP {p['ap']:.1f}%{tag}" for p in ours)
    return study.save_figure(fig, name or f"ap_vs_params_published_{setting}", checkpoints=runs,
                             headline=headline or "published points only",
                             published_source="shared/reference/published_widerface.csv",
                             published_rows=len(published))


def _label_points(ax, points: list[tuple[str, float, float]], fontsize: float = 5) -> None:
    """Name each point beside it, trying a few offsets in turn so that no name covers another one
    (close published detectors, e.g. two RetinaFace rows at the same size, were written over each other)."""
    ax.figure.canvas.draw()   # the layout first: the names are placed where the points finally are
    renderer = ax.figure.canvas.get_renderer()
    offsets = ((3, 2, "left"), (3, -7, "left"), (-3, 2, "right"), (-3, -7, "right"), (3, 9, "left"), (3, -14, "left"))
    placed = []
    for name, x, y in points:
        for dx, dy, align in offsets:
            text = ax.annotate(name, (x, y), fontsize=fontsize, xytext=(dx, dy), textcoords="offset points",
                               ha=align, color="#333333")
            # a name past the axes' edge is clipped, not allowed to push the layout: constrained layout
            # would otherwise shrink the axes to make room for it
            text.set_in_layout(False)
            text.set_clip_on(True)
            box = text.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            text.remove()
        else:   # every offset collides: keep the first rather than drop a name
            text = ax.annotate(name, (x, y), fontsize=fontsize, xytext=offsets[0][:2], textcoords="offset points",
                               color="#333333")
            text.set_in_layout(False)
            text.set_clip_on(True)
            box = text.get_window_extent(renderer)
        placed.append(box)
