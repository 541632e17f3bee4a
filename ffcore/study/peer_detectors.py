"""Peer detectors beside our models (notebook 05): latency and detections on the real photos.

The peers (MTCNN, BlazeFace, dlib HOG, OpenCV Haar cascade) need pins that do not fit the
main environment, so they are timed in their own (`make peers`) by
`benchmarks/bench_peers.py`, which times our trained models in the same interleaved rounds
and writes one CSV. These functions only read that CSV; they never run a peer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ffcore.runs.context import Study
from ffcore.report.display import CAPTION

BENCH_COMMAND = "make peers && .venv-peers/bin/python benchmarks/bench_peers.py"
REQUIRED_COLUMNS = ("run_id", "detector", "kind", "image", "size", "height", "width", "threads", "median_ms",
                    "p10_ms", "p90_ms", "samples_ms", "detections", "boxes", "load_before")


class PeerBenchmarkMissingError(FileNotFoundError):
    """The peers' CSV is not there; the message gives the command that writes it."""


def default_peer_csv() -> Path:
    # The peers run in their own environment, not in a study run, so their CSV is a committed input of
    # the repository: it stays at results/peers/ even when a study writes its results elsewhere (FFCORE_RESULTS).
    from ffcore.paths import REPO_ROOT

    return REPO_ROOT / "results" / "peers" / "peer_benchmark.csv"


def load_peer_benchmark(path: str | Path | None = None) -> pd.DataFrame:
    """Every row of the peers' CSV (one per launch, detector, image and size), checked for its columns."""
    path = Path(path) if path is not None else default_peer_csv()
    if not path.is_file():
        raise PeerBenchmarkMissingError(f"no peer benchmark at {path}: create it with `{BENCH_COMMAND}` "
                                        f"(add --append to a later launch to compare launches)")
    table = pd.read_csv(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: columns {missing} are missing; it was not written by benchmarks/bench_peers.py "
                         f"(rerun `{BENCH_COMMAND}`)")
    if table.empty:
        raise ValueError(f"{path} has a header but no rows; rerun `{BENCH_COMMAND}`")
    table["size"] = table["size"].astype(str)
    return table


def peer_latency_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per detector, image and size: the launches' medians (their median, min and max),
    the pooled 10th/90th percentiles, and the detection count of the latest launch."""
    rows = []
    for (detector, image, size), group in table.groupby(["detector", "image", "size"], sort=False):
        samples = [s for row in group["samples_ms"] for s in json.loads(row)]
        latest = group.sort_values("run_id").iloc[-1]
        rows.append({"detector": detector, "kind": latest["kind"], "image": image, "size": size,
                     "input": f"{latest['width']}x{latest['height']}", "launches": len(group),
                     "median_ms": group["median_ms"].median(), "launch_min_ms": group["median_ms"].min(),
                     "launch_max_ms": group["median_ms"].max(),
                     "p10_ms": pd.Series(samples).quantile(0.10), "p90_ms": pd.Series(samples).quantile(0.90),
                     "samples": len(samples), "detections": int(latest["detections"]),
                     "load_average": group["load_before"].median()})
    summary = pd.DataFrame(rows)
    return summary.sort_values(["image", "size", "median_ms"], kind="stable").reset_index(drop=True)


def _provenance(study: Study, table: pd.DataFrame, **notes):
    from ffcore.report.provenance import REAL_PHOTOS, Provenance

    # Real photos and real trained detectors (ours on WIDER FACE; peers ship their own weights),
    # whatever the profile: the artifact says so rather than inheriting the profile's dataset.
    return Provenance(profile=study.profile.name, dataset=REAL_PHOTOS,
                      notes={"images": sorted(set(table["image"])), "launches": sorted(set(table["run_id"])),
                             "threads": sorted(set(table["threads"].astype(int))),
                             "source": "benchmarks/bench_peers.py in .venv-peers", **notes})


def peer_latency_table(study: Study, path: str | Path | None = None, name: str = "peer_latency") -> pd.DataFrame:
    """Whole-pipeline latency of the peers and of our trained models, timed side by side on the
    real photos at 640 px (long side) and at their original size, with detection counts."""
    from ffcore.report.provenance import write_table

    table = load_peer_benchmark(path)
    summary = peer_latency_summary(table).round(2)
    fastest = summary[summary["size"] == summary["size"].iloc[0]].iloc[0]
    launches = table["run_id"].nunique()
    headline = (f"fastest on {fastest['image']} at {fastest['size']}: {fastest['detector']} "
                f"{fastest['median_ms']:.1f} ms (median of {launches} launch(es), load average "
                f"{fastest['load_average']:.1f} while timed)")
    caption = ("Peers and our models, whole pipeline on the real photos, batch 1 "
               f"({', '.join(map(str, sorted(set(table['threads'].astype(int)))))} threads)")
    summary.attrs[CAPTION] = caption   # shown above the table in a notebook
    write_table(summary, study.tables_dir, name, _provenance(study, table), caption=caption, headline=headline)
    return summary


def peer_latency_figure(study: Study, size: str = "640", path: str | Path | None = None,
                        name: str = "peer_latency"):
    """Distribution of every detector's latency (all samples of all launches) at one size, per photo:
    box = quartiles, whiskers = the pooled 10th-90th percentiles (the table's p10_ms / p90_ms), and a
    white diamond at the table's median_ms (the median of the launches' medians)."""
    import matplotlib.patches as patches
    from matplotlib.lines import Line2D

    from ffcore.report.plotting import PALETTE, new_figure, pretty_name
    from ffcore.report.provenance import write_figure

    table = load_peer_benchmark(path)
    selected = table[table["size"] == str(size)]
    if selected.empty:
        raise ValueError(f"no rows of size {size!r} in the peer benchmark (sizes: {sorted(set(table['size']))})")
    images = list(dict.fromkeys(selected["image"]))
    fig, axes = new_figure(ncols=len(images), aspect=0.45)
    axes = axes.ravel() if hasattr(axes, "ravel") else [axes]
    for ax, image in zip(axes, images):
        rows = selected[selected["image"] == image]
        medians = rows.groupby("detector")["median_ms"].median().sort_values()   # as peer_latency_summary
        order = medians.index.tolist()
        data = [[s for r in rows[rows["detector"] == d]["samples_ms"] for s in json.loads(r)] for d in order]
        kinds = [rows[rows["detector"] == d]["kind"].iloc[0] for d in order]
        parts = ax.boxplot(data, orientation="horizontal", patch_artist=True, showfliers=False, widths=0.6,
                           whis=(10, 90), medianprops={"linewidth": 0})
        for patch, kind in zip(parts["boxes"], kinds):
            patch.set_facecolor(PALETTE[2] if kind == "ours" else PALETTE[0])
        ax.scatter(medians.to_numpy(), range(1, len(order) + 1), marker="D", s=14, color="white",
                   edgecolor="black", linewidth=0.6, zorder=3)
        ax.set_yticks(range(1, len(order) + 1), [pretty_name(d) for d in order])
        ax.set_xscale("log")
        ax.set_xlabel("whole pipeline (ms, log scale)")
        first = rows.iloc[0]
        ax.set_title(f"{image} at {first['width']}x{first['height']}", fontsize=8)
    handles = [patches.Patch(facecolor=PALETTE[2], label="ours (trained on WIDER FACE)"),
               patches.Patch(facecolor=PALETTE[0], label="peers"),
               Line2D([], [], marker="D", markersize=4, color="white", markeredgecolor="black", linestyle="none",
                      label="median of the launches' medians (the table's)"),
               patches.Patch(facecolor="white", edgecolor="black", label="box: quartiles, whiskers: p10-p90")]
    # above the panels: the provenance stamp goes below the figure
    fig.legend(handles=handles, loc="outside upper center", ncol=2, fontsize=7, frameon=False)
    summary = peer_latency_summary(selected)
    headline = "; ".join(f"{r.image} {r.detector} {r.median_ms:.1f} ms" for r in summary.itertuples())
    write_figure(fig, study.figures_dir, name, _provenance(study, selected, size=size), headline=headline)
    return fig


def peer_detections_figure(study: Study, image: str = "crowd.jpg", size: str = "original",
                           path: str | Path | None = None, name: str | None = None, max_drawn: int = 200):
    """The photo once per detector with the boxes it found (ours: score >= 0.5; peers: their own
    operating point), from the boxes the benchmark recorded."""
    import matplotlib.patches as patches

    from ffcore.paths import shared_dir
    from ffcore.report.plotting import PALETTE, new_figure, pretty_name
    from ffcore.preprocess import read_image
    from ffcore.report.provenance import write_figure

    table = load_peer_benchmark(path)
    rows = table[(table["image"] == image) & (table["size"] == str(size))]
    if rows.empty:
        raise ValueError(f"no rows for {image} at size {size!r} in the peer benchmark "
                         f"(images {sorted(set(table['image']))}, sizes {sorted(set(table['size']))})")
    # the table's median (median of the launches' medians) in the titles; the latest launch's boxes
    medians = peer_latency_summary(rows).set_index("detector")
    rows = rows[rows["run_id"] == rows["run_id"].max()]
    photo = read_image(shared_dir() / "images" / image)
    ncols = 3
    nrows = -(-len(rows) // ncols)
    aspect = nrows * photo.shape[0] / photo.shape[1] / ncols * 1.15
    fig, axes = new_figure(ncols=ncols, nrows=nrows, aspect=aspect)
    axes = axes.ravel()
    for ax, row in zip(axes, rows.itertuples()):
        boxes = json.loads(row.boxes)
        ax.imshow(photo[:, :, ::-1])
        ax.axis("off")
        colour = PALETTE[2] if row.kind == "ours" else PALETTE[4]
        for x1, y1, x2, y2, _score in boxes[:max_drawn]:
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=0.7, edgecolor=colour))
        ax.set_title(f"{pretty_name(row.detector)}: {row.detections} faces, {medians.loc[row.detector, 'median_ms']:.0f} ms",
                     fontsize=7)
    for ax in axes[len(rows):]:
        ax.axis("off")
    launches = int(medians["launches"].max())
    fig.suptitle(f"{image}: faces found (latest launch) and whole-pipeline time (median of {launches} launch(es), "
                 f"as in the peer latency table)", fontsize=7)
    headline = "; ".join(f"{r.detector} {r.detections}" for r in rows.itertuples())
    write_figure(fig, study.figures_dir, name or f"peer_detections_{Path(image).stem}_{size}",
                 _provenance(study, rows, size=size, image=image),
                 headline=f"faces found on {image} at {size}: {headline}")
    return fig
