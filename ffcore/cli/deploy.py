"""`ffcore export` (ONNX with a parity check, INT8) and `ffcore bench` (latency, memory, size)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ffcore.cli.common import MODEL_HELP, CommandError, parse_size, registered_model, show_loading_notes

DEFAULT_MODELS = ("retinaface_mnet025", "featherface_v1", "featherface_v2")


def size_text(text: str) -> str:
    """argparse type of size options: N or HxW, checked at once (kept as text, parsed by the handler)."""
    try:
        parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def bench_setting(name: str) -> str:
    """argparse type of `--setting`: a name in `ffcore.bench.BENCH_SETTINGS` (imported when the option
    is read, not for `--help`: the module imports torch)."""
    from ffcore.bench import BENCH_SETTINGS

    if name not in BENCH_SETTINGS:
        raise argparse.ArgumentTypeError(f"unknown benchmark setting {name!r}; settings: "
                                          f"{', '.join(sorted(BENCH_SETTINGS))}")
    return name


class DeprecatedAlias(argparse.Action):
    """An old flag that still works, with a note naming its replacement."""

    def __init__(self, option_strings, dest, replacement: str, **kwargs):
        self.replacement = replacement
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is deprecated, use {self.replacement}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_export(sub) -> None:
    p = sub.add_parser("export", help="ONNX export with an ONNX Runtime parity check (and INT8)",
                       description="Export a model to ONNX (dynamic batch, H, W; opset >= 19; V1's deformable "
                                   "convolutions become ONNX DeformConv) and check it against PyTorch in ONNX "
                                   "Runtime (max |diff| <= 1e-4 on loc, conf, landm at each parity size).")
    p.add_argument("--model", required=True, type=registered_model, help=MODEL_HELP)
    p.add_argument("--weights", default=None)
    p.add_argument("--out", required=True, help="output .onnx path")
    p.add_argument("--opset", type=int, default=19, help="ONNX opset (>= 19, default 19)")
    p.add_argument("--parity-sizes", nargs="+", default=["640", "480x640"], metavar="SIZE", type=size_text,
                   help="input sizes of the parity check, N or HxW (default 640 480x640)")
    p.add_argument("--int8", action="store_true", help="also write a statically quantised INT8 model (<out>_int8.onnx)")
    p.add_argument("--calib-data", default=None,
                   help="WIDER-format dataset root for INT8 calibration images, taken from its training split (default: the synthetic dataset)")
    p.add_argument("--calib-count", type=int, default=32, help="number of calibration images (default 32)")
    p.add_argument("--ap", action="store_true", help="with --int8: report the AP change on the calibration "
                                                      "dataset's validation split")
    p.add_argument("--literal", action="store_true",
                   help="write the literal graph of the trained modules instead of the deploy graph "
                        "(batch norm and shuffles folded, heads merged, compact attention: exact rewrites)")
    p.add_argument("--calib-method", default="percentile", choices=("minmax", "percentile", "entropy"),
                   help="with --int8: activation range calibration (default percentile)")
    p.set_defaults(handler=export_command)


def add_bench(sub) -> None:
    p = sub.add_parser("bench", help="latency / memory / size benchmark of models and peers",
                       description="Time PyTorch eager and ONNX Runtime (FP32, INT8) at 640x640 and VGA; "
                                   "medians of repeated runs after warm-up, all runners interleaved so that "
                                   "ratios hold on a loaded machine.")
    p.add_argument("--models", nargs="+", default=None, type=registered_model, metavar="MODEL",
                   help=f"models (default {' '.join(DEFAULT_MODELS)}; the first is the "
                        "reference of the printed ratios)")
    p.add_argument("--weights", nargs="+", default=None, metavar="NAME=PATH", help="checkpoints per model")
    p.add_argument("--setting", default="full", type=bench_setting,
                   help="benchmark matrix, a name in ffcore.bench.BENCH_SETTINGS (default full)")
    # the option's name before it followed the design's word (benchmark matrices are settings)
    p.add_argument("--preset", dest="setting", type=bench_setting, action=DeprecatedAlias, replacement="--setting",
                   help=argparse.SUPPRESS)
    p.add_argument("--sizes", nargs="+", default=None, metavar="SIZE", type=size_text, help="override sizes, N or HxW")
    p.add_argument("--batches", nargs="+", type=int, default=None, help="override batch sizes")
    p.add_argument("--threads", nargs="+", type=int, default=None, help="override thread counts")
    p.add_argument("--backends", nargs="+", default=None, help="override: torch onnx_fp32 onnx_int8")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per configuration (default: the setting's)")
    p.add_argument("--peers", action="store_true",
                   help="include the peer detectors that start in this environment (they live in .venv-peers: "
                        "`make peers`; benchmarks/bench_peers.py times them on the real photos)")
    p.add_argument("--out", default=None, help="CSV output")
    p.add_argument("--figure", default=None, help="latency figure output (png/pdf)")
    p.set_defaults(handler=bench_command)


def export_command(model: str, out: str, weights: str | None = None, int8: bool = False,
                   calib_data: str | None = None, opset: int = 19, calib_count: int = 32,
                   ap: bool = False, parity_sizes: Sequence[str] = ("640", "480x640"), literal: bool = False,
                   calib_method: str = "percentile") -> int:
    """`ffcore export`: export, print the parity report; optionally quantise to INT8 and report agreement/AP.
    Exit code 1 when the parity check failed."""
    from ffcore.deploy.int8 import int8_ap_change
    from ffcore.deploy.export import export_onnx
    from ffcore.deploy.int8 import output_agreement, quantize_int8
    from ffcore.models import create_model, load_pretrained

    show_loading_notes()
    network = load_pretrained(model, weights) if weights else create_model(model)
    result = export_onnx(network, out, opset=opset, strict=False, deploy=not literal,
                         parity_sizes=tuple(parse_size(s) for s in parity_sizes))
    print(result.summary())
    if int8:
        root = calib_data
        if root is None:
            from ffcore.data.synth import ensure_synthetic_dataset

            root = ensure_synthetic_dataset()
            print(f"calibrating on the synthetic dataset at {root} (pass --calib-data for real images)")
        int8_path = Path(out).with_name(Path(out).stem + "_int8.onnx")
        quantize_int8(out, int8_path, root, count=calib_count, method=calib_method)
        print(f"INT8 model: {int8_path} ({int8_path.stat().st_size / 1e6:.3f} MB)")
        for name, values in output_agreement(out, int8_path).items():
            print(f"  INT8 vs FP32 {name:>5}: pearson r {values['pearson_r']:.4f}, "
                  f"max |diff| {values['max_abs_diff']:.3g}")
        if ap:
            print(int8_ap_change(out, int8_path, root).to_string(index=False))
    return 0 if result.parity is None or result.parity.passed else 1


def _weight_map(items: Sequence[str] | None) -> dict[str, str]:
    """`NAME=PATH` items -> {name: path}."""
    mapping = {}
    for item in items or ():
        name, _, path = item.partition("=")
        if not path:
            raise CommandError(f"--weights expects NAME=PATH, got {item!r}")
        mapping[name] = path
    return mapping


def bench_command(models: Sequence[str] | None = None, out: str | None = None, repeats: int | None = None,
                  peers: bool = False, setting: str = "full", sizes: Sequence[str] | None = None,
                  batches: Sequence[int] | None = None, threads: Sequence[int] | None = None,
                  backends: Sequence[str] | None = None, weights: Sequence[str] | None = None,
                  figure: str | None = None) -> int:
    """`ffcore bench`: run the matrix, print the table and the speed ratios, optionally write CSV / figure."""
    import sys

    import pandas as pd

    from ffcore.bench import get_bench_config, run_benchmark, speed_ratios
    from ffcore.study.bench_figures import draw_latency

    overrides: dict = {}
    if repeats is not None:
        overrides["repeats"] = repeats
    if sizes:
        overrides["sizes"] = tuple(parse_size(s) for s in sizes)
    if batches:
        overrides["batches"] = tuple(batches)
    if threads:
        overrides["threads"] = tuple(threads)
    if backends:
        overrides["backends"] = tuple(backends)
    config = get_bench_config(setting, **overrides)
    show_loading_notes()
    names = list(models) if models else list(DEFAULT_MODELS)
    table = run_benchmark(names, config, weights=_weight_map(weights), peers=peers,
                          progress=lambda msg: print(msg, file=sys.stderr))
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table[["model", "backend", "height", "width", "batch", "threads", "forward_median_ms",
                     "forward_p10_ms", "forward_p90_ms", "preprocess_median_ms", "postprocess_median_ms",
                     "peak_rss_delta_mb", "model_file_mb"]].to_string(index=False, float_format="%.2f"))
    for peer, reason in table.attrs.get("skipped_peers", {}).items():
        print(f"peer {peer} skipped: {reason}")
    reference = names[0]
    for backend in config.backends:
        for height, width in config.sizes:
            for batch in config.batches:
                for thread_count in config.threads:
                    try:
                        ratios = speed_ratios(table, reference, backend, (height, width), batch, thread_count)
                    except KeyError:
                        continue
                    print(f"\n{backend} {height}x{width} batch {batch} threads {thread_count}:")
                    print(ratios.to_string(index=False, float_format="%.3f"))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out, index=False)
        print(f"wrote {out}")
    if figure:
        draw_latency(table).savefig(figure)
        print(f"wrote {figure}")
    return 0
