"""The benchmark's named settings: which sizes, batches, thread counts and backends to time.

`BENCH_SETTINGS` holds "full" (the thesis table), "target" (the speed targets only) and
"smoke" (one setting, a few repeats, for notebooks and tests).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

BACKENDS = ("torch", "onnx_fp32", "onnx_int8")


@dataclass(frozen=True)
class BenchConfig:
    """The benchmark matrix. Sizes are (height, width)."""

    sizes: tuple[tuple[int, int], ...] = ((640, 640), (480, 640))
    batches: tuple[int, ...] = (1, 8)
    threads: tuple[int, ...] = (1, 2)
    backends: tuple[str, ...] = BACKENDS
    repeats: int = 20
    warmup: int = 3
    calibration_images: int = 8     # INT8 calibration set (latency barely depends on it)

    def __post_init__(self):
        unknown = set(self.backends) - set(BACKENDS)
        if unknown:
            raise ValueError(f"unknown backends {sorted(unknown)}; choose from {BACKENDS}")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {self.repeats}, {self.warmup}")


BENCH_SETTINGS = {
    "full": BenchConfig(),
    "target": BenchConfig(sizes=((640, 640),), batches=(1,), threads=(2,), backends=("onnx_fp32",),
                          repeats=30, warmup=5),
    "smoke": BenchConfig(sizes=((640, 640),), batches=(1,), threads=(2,), backends=("torch", "onnx_fp32"),
                         repeats=3, warmup=1),
}


def get_bench_config(name: str, **overrides) -> BenchConfig:
    if name not in BENCH_SETTINGS:
        raise KeyError(f"unknown benchmark setting {name!r}; choose from {sorted(BENCH_SETTINGS)}")
    return replace(BENCH_SETTINGS[name], **overrides)
