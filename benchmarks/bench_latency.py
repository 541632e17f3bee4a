"""CPU latency of the three detectors, all runners interleaved in one run; prints medians and ratios.

    .venv/bin/python benchmarks/bench_latency.py [--preset target|smoke|full] [--out results/latency.csv]

Targets (ONNX Runtime FP32, batch 1, 2 threads, 640x640): featherface_v2 at least 1.5x faster
than featherface_v1 and no slower than retinaface_mnet025. The original implementations in
PyTorch eager were measured at about 40 ms (RetinaFace), 280 ms (V1) and 61 ms (V2) per
640x640 image; the eager rows of the "full" preset compare against those.
"""

from __future__ import annotations

import sys

MODELS = ["retinaface_mnet025", "featherface_v1", "featherface_v2"]
ORIGINAL_EAGER_MS = {"retinaface_mnet025": 40.0, "featherface_v1": 280.0, "featherface_v2": 61.0}


def main(argv: list[str]) -> int:
    from ffcore.bench import check_targets, get_bench_config, run_benchmark, torch_operator_times

    preset = argv[argv.index("--preset") + 1] if "--preset" in argv else "target"
    out = argv[argv.index("--out") + 1] if "--out" in argv else None
    config = get_bench_config(preset)
    table = run_benchmark(MODELS, config, progress=lambda m: print(m, file=sys.stderr))
    columns = ["model", "backend", "height", "width", "batch", "threads", "forward_median_ms", "forward_p10_ms",
               "forward_p90_ms", "preprocess_median_ms", "postprocess_median_ms", "peak_rss_delta_mb",
               "model_file_mb"]
    print(table[columns].to_string(index=False, float_format="%.2f"))
    if "onnx_fp32" in config.backends and (640, 640) in config.sizes and 1 in config.batches and 2 in config.threads:
        for key, value in check_targets(table).items():
            print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    eager = table[(table.backend == "torch") & (table.height == 640) & (table.width == 640) & (table.batch == 1)]
    for row in eager.itertuples():
        print(f"eager {row.model} threads {row.threads}: {row.forward_median_ms:.1f} ms "
              f"(original implementation: about {ORIGINAL_EAGER_MS[row.model]:.0f} ms)")
    if "--profile" in argv:
        from ffcore.models import create_model

        print(torch_operator_times(create_model("featherface_v1"), 640).to_string(index=False, float_format="%.3f"))
    if out:
        table.to_csv(out, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
