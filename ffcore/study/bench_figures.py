"""The benchmark's figure: forward-pass latency per model and backend (from a `run_benchmark` table)."""

from __future__ import annotations


def draw_latency(table, size: tuple[int, int] = (640, 640), batch: int = 1, threads: int | None = None,
                   title: str | None = None):
    """Bar chart of the forward-pass medians (p10-p90 whiskers) per model and backend; returns the Figure."""
    from ffcore.report.plotting import model_styles, new_figure, pretty_name

    threads = threads if threads is not None else int(table.threads.max())
    selected = table[(table.height == size[0]) & (table.width == size[1]) & (table.batch == batch)
                     & (table.threads == threads)]
    if selected.empty:
        raise ValueError(f"no benchmark rows at {size[0]}x{size[1]} batch {batch} threads {threads}")
    fig, ax = new_figure(aspect=0.62)
    backends = list(dict.fromkeys(selected.backend))
    models = list(dict.fromkeys(selected.model))
    styles = model_styles(models)   # one colour per model of the figure, never two alike
    width = 0.8 / len(backends)
    hatches = ("", "//", "..", "xx", "\\\\")
    for b, backend in enumerate(backends):
        for m, model in enumerate(models):
            row = selected[(selected.model == model) & (selected.backend == backend)]
            if row.empty:
                continue
            row = row.iloc[0]
            error = [[row.forward_median_ms - row.forward_p10_ms], [row.forward_p90_ms - row.forward_median_ms]]
            ax.bar(m + (b - (len(backends) - 1) / 2) * width, row.forward_median_ms, width, yerr=error,
                   color=styles[model]["color"], hatch=hatches[b % len(hatches)], edgecolor="black",
                   linewidth=0.5, capsize=2, error_kw={"elinewidth": 0.8})
    # labels end under their bar (anchored at their right end), so a long name never leaves the figure
    ax.set_xticks(range(len(models)), [pretty_name(m) for m in models], rotation=25, ha="right",
                  rotation_mode="anchor")
    ax.set_ylabel("forward pass, median ms (p10-p90)")
    ax.set_title(title or f"CPU latency, {size[0]}x{size[1]}, batch {batch}, {threads} thread(s)")
    if len(backends) > 1:
        # colour is the model (named on the x axis); the legend explains the hatch, in neutral grey,
        # outside the axes so it never covers a bar
        from matplotlib.patches import Patch

        fig.legend(handles=[Patch(facecolor="#dddddd", edgecolor="black", hatch=hatches[b % len(hatches)],
                                  label=backend) for b, backend in enumerate(backends)], title="backend",
                   loc="outside right upper", fontsize=7, title_fontsize=7, frameon=False)
    else:
        ax.text(0.99, 0.97, f"backend: {backends[0]}", transform=ax.transAxes, ha="right", va="top", fontsize=7)
    return fig
