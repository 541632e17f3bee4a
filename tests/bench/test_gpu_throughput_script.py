"""benchmarks/bench_gpu_throughput.py: the GPU training-throughput command, checked on the CPU at a tiny size."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu_throughput.py"


def _script():
    spec = importlib.util.spec_from_file_location("bench_gpu_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module     # dataclasses look their module up while the script loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from ffcore.data.synth import TINY_SYNTH, ensure_synthetic_dataset

    return ensure_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "tiny", TINY_SYNTH)


def _rate(line: str, column: int) -> float:
    return float(line.split()[column])


def test_cpu_run_prints_model_alone_full_step_and_loader_rates(tiny_root, capsys):
    bench = _script()
    code = bench.main(["--device", "cpu", "--steps", "3", "--size", "64", "--batch-size", "2", "--workers", "0",
                       "--warmup", "1", "--windows", "1", "--data", str(tiny_root),
                       "--models", "featherface_v1", "featherface_v2", "featherface_eca_cbam"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "64x64, batch 2, fp32" in out          # no float16 autocast on the CPU, whatever the flag says
    loader = next(line for line in out.splitlines() if line.startswith("data loader alone"))
    augmented, plain = map(float, re.findall(r"([\d.]+) (?:images/s|without)", loader))
    assert augmented > 0 and plain > 0
    for name in ("featherface_v1", "featherface_v2", "featherface_eca_cbam"):
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert _rate(line, 1) > 0 and _rate(line, 2) > 0, line


def test_a_model_that_is_not_registered_is_named_and_skipped(tiny_root, capsys):
    bench = _script()
    code = bench.main(["--device", "cpu", "--steps", "1", "--size", "64", "--batch-size", "2", "--workers", "0",
                       "--warmup", "0", "--windows", "1", "--data", str(tiny_root),
                       "--models", "featherface_not_there", "featherface_v2"])
    captured = capsys.readouterr()
    assert code == 0
    assert "skipped featherface_not_there: not registered" in captured.err
    assert any(line.startswith("featherface_v2") for line in captured.out.splitlines())


def test_only_unregistered_models_is_a_failure(tiny_root, capsys):
    bench = _script()
    assert bench.main(["--device", "cpu", "--steps", "1", "--size", "64", "--batch-size", "2", "--workers", "0",
                       "--warmup", "0", "--windows", "1", "--data", str(tiny_root), "--models", "nope"]) == 1


def test_plain_transform_keeps_the_training_layout_without_augmenting():
    import numpy as np

    bench = _script()
    image = np.full((30, 60, 3), 200, np.uint8)
    targets = np.array([[6, 3, 18, 15, *([9, 9] * 5), 1]], np.float32)
    tensor, normalised = bench.PlainTransform(32)(image, targets, np.random.default_rng(0))
    assert tensor.shape == (3, 32, 32)
    # padded to 60x60 at the bottom, then scaled: the box keeps its place relative to the square
    assert np.allclose(normalised[0, :4], [6 / 60, 3 / 60, 18 / 60, 15 / 60])
    assert normalised[0, -1] == 1


def test_augmentation_cost_is_the_per_worker_time_difference():
    bench = _script()
    # two workers deliver 100 images/s augmented and 200 without: each worker spends 20 ms vs 10 ms per image
    assert bench.workers_time_per_image(100.0, 200.0, workers=2) == pytest.approx(0.010)
    assert bench.workers_time_per_image(100.0, 200.0, workers=0) == pytest.approx(0.005)


def test_missing_data_folder_names_the_folder(tmp_path):
    bench = _script()
    with pytest.raises(SystemExit, match="no such folder"):
        bench.resolve_data(str(tmp_path / "absent"))
