"""benchmarks/bench_gpu_throughput.py: the GPU training-throughput command, checked on the CPU at a tiny size."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu_throughput.py"
TINY = ["--device", "cpu", "--size", "64", "--batch-size", "2", "--workers", "0", "--warmup", "0", "--windows", "1"]


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


def test_cpu_run_prints_loader_model_alone_and_full_step_for_v1_and_v2(tiny_root, capsys):
    bench = _script()
    code = bench.main([*TINY, "--steps", "2", "--data", str(tiny_root)])
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("featherface_v1", "featherface_v2"):
        line = next(line for line in out.splitlines() if line.startswith(name))
        loader, alone, full = (float(v) for v in line.split()[1:4])
        assert loader > 0 and alone > 0 and full > 0, line
        assert "the fork's 207 images/s" in line
        # the full profile's settings; no float16 autocast on the CPU whatever the profile says
        assert "64x64, batch 2, fp32, channels-last, 0 workers, prefetch 4, sync every 10" in line
        validation = next(line for line in out.splitlines() if line.startswith(name) and "validation" in line)
        batched, one_by_one = map(float, re.findall(r"([\d.]+) (?:images/s batched|one by one)", validation))
        assert batched > 0 and one_by_one > 0 and "up to 16" in validation


def test_the_benchmark_times_the_studys_own_training_config(tiny_root):
    from ffcore.runs.context import open_study
    from ffcore.runs.training import train_config

    bench = _script()
    overrides = {"image_size": 64, "batch_size": 2, "workers": 0, "amp": True, "grad_clip_norm": 5.0}
    timed = bench.study_configs("full", ["featherface_v1", "featherface_v2"], tiny_root, "cpu", overrides)
    study = open_study("full", data_root=tiny_root, device="cpu", overrides=overrides, prepare_data=False)
    for run, config in timed.items():
        assert config == train_config(study, run)
        assert (config.amp, config.grad_clip_norm, config.channels_last) == (True, 5.0, True)
    assert timed["featherface_v2"].mixup_prob == 0.5     # V2's own recipe (v2_thesis), as the study trains it


def test_an_override_is_a_profile_field_and_a_wrong_one_is_named(tiny_root, capsys):
    bench = _script()
    with pytest.raises(SystemExit, match="unknown profile field.*ampp.*RunProfile fields: .*amp,"):
        bench.main([*TINY, "--steps", "1", "--data", str(tiny_root), "--override", "ampp=True"])
    with pytest.raises(SystemExit, match="not a run of profile full"):
        bench.main([*TINY, "--steps", "1", "--data", str(tiny_root), "--runs", "featherface_not_there"])


def test_wider_sized_data_is_1024_pixels_on_the_long_side():
    from ffcore.data.synth import WIDER_SIZED_SYNTH

    assert WIDER_SIZED_SYNTH.min_long_side == WIDER_SIZED_SYNTH.max_long_side == 1024


def test_missing_data_folder_names_the_folder(tmp_path):
    bench = _script()
    with pytest.raises(SystemExit, match="no such folder"):
        bench.resolve_data(str(tmp_path / "absent"))
