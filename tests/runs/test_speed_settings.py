"""A training run's speed settings: fields of the run profile, read by `ffcore study train` and by the
throughput benchmark alike, recorded in each run's record, in the fingerprint where they change results."""

from __future__ import annotations

from pathlib import Path

import pytest

from ffcore.runs.profiles import PROFILES, SPEED_FIELDS, get_profile

TINY = {"image_size": 64, "batch_size": 4, "max_steps_per_epoch": 1, "epochs": 1, "student_epochs": 1,
        "finetune_epochs": 1, "seeds": (0,)}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from ffcore.runs.datasets import prepare_dataset

    return prepare_dataset(get_profile("smoke"), tmp_path_factory.mktemp("smoke_data") / "smoke")


def _study(data_root, **changes):
    from ffcore.runs.context import open_study

    return open_study("smoke", data_root=data_root, overrides={**TINY, **changes}, prepare_data=False)


def test_every_profile_trains_in_fp32_unless_told_otherwise(data_root):
    from ffcore.runs.context import open_study
    from ffcore.runs.training import train_config

    for name in PROFILES:
        study = open_study(name, data_root=data_root, device="cpu", prepare_data=False)
        for run in ("featherface_v1", "featherface_v2"):
            assert train_config(study, run).amp is False, (name, run)
    full = open_study("full", data_root=data_root, device="cuda", prepare_data=False,
                      overrides={"amp": True, "amp_dtype": "bfloat16", "grad_clip_norm": 5.0})
    config = train_config(full, "featherface_v1")
    assert (config.amp, config.amp_dtype, config.grad_clip_norm) == (True, "bfloat16", 5.0)
    assert (config.channels_last, config.cudnn_benchmark, config.prefetch_factor, config.sync_every_steps) \
        == (True, True, 4, 10)


def test_a_field_left_none_keeps_the_presets_value(data_root):
    from ffcore.runs.training import train_config

    # the synthetic_cpu preset trains NHWC; the synthetic profile does not say otherwise
    study = _study(data_root, train_preset="synthetic_cpu")
    assert get_profile("smoke").channels_last is None and train_config(study, "featherface_v1").channels_last is True
    assert train_config(_study(data_root, train_preset="synthetic_cpu", channels_last=False),
                        "featherface_v1").channels_last is False


def test_loader_workers_default_to_the_usable_cpus_but_the_trainers(monkeypatch):
    import os

    from ffcore.engine.resources import default_loader_workers, usable_cpus

    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "8")
    assert usable_cpus() == 8 and default_loader_workers() == 7
    assert get_profile("full").training_speed()["workers"] == 7
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "eight")
    with pytest.raises(ValueError, match="SLURM_CPUS_PER_TASK='eight'"):
        usable_cpus()
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert usable_cpus() == len(os.sched_getaffinity(0))
    assert get_profile("smoke").training_speed()["workers"] == 0    # CPU profiles: no loader processes


def test_a_bad_speed_setting_names_the_field():
    with pytest.raises(ValueError, match="amp_dtype='float8'"):
        get_profile("full").with_overrides(fields={"amp_dtype": "float8"})
    with pytest.raises(ValueError, match="amp='true'"):
        get_profile("full").with_overrides(fields={"amp": "true"})
    with pytest.raises(ValueError, match="sync_every_steps=0"):
        get_profile("full").with_overrides(fields={"sync_every_steps": 0})


def test_an_override_of_the_command_line_is_a_field_or_a_message_naming_the_fields():
    from ffcore.cli.study import check_overrides, parse_overrides

    check_overrides("full", parse_overrides(["amp=True", "workers=3"]))      # no error
    with pytest.raises(SystemExit, match=r"ffcore study: --override: unknown profile field\(s\) ampp; "
                                         r"RunProfile fields: .*\bamp\b.*\bworkers\b"):
        check_overrides("full", parse_overrides(["ampp=True"]))
    with pytest.raises(SystemExit, match="amp_dtype='half'"):
        check_overrides("full", parse_overrides(["amp_dtype=half"]))


def test_precision_and_clipping_are_in_the_fingerprint_loader_and_sync_settings_are_not(data_root):
    from ffcore.runs.plan import planned_run
    from ffcore.runs.training import expected_fingerprint

    def fingerprint(**changes):
        study = _study(data_root, **changes)
        return expected_fingerprint(study, planned_run(study.profile, "featherface_v1"))

    base = fingerprint()
    for changes in ({"workers": 3}, {"prefetch_factor": 5}, {"sync_every_steps": 7}, {"cudnn_benchmark": True}):
        assert fingerprint(**changes) == base, changes
    for changes in ({"amp": True}, {"amp_dtype": "bfloat16"}, {"grad_clip_norm": 5.0}, {"channels_last": True}):
        assert fingerprint(**changes) != base, changes


def test_the_run_record_keeps_each_sessions_speed_settings(data_root, tmp_path, monkeypatch):
    from ffcore.runs.records import read_record
    from ffcore.runs.training import ensure_run

    monkeypatch.setenv("FFCORE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("FFCORE_FIGURES", str(tmp_path / "figures"))
    study = _study(data_root, sync_every_steps=2, grad_clip_norm=5.0)
    assert ensure_run(study, "featherface_v2") == "trained"
    record = read_record(study.run_dir("featherface_v2"))
    speed = record["sessions"][-1]["speed"]
    assert set(speed) == set(SPEED_FIELDS)
    assert (speed["sync_every_steps"], speed["grad_clip_norm"], speed["workers"], speed["amp"]) == (2, 5.0, 0, False)
    # a session with more loader processes reuses the run: workers do not change what is learned
    assert ensure_run(_study(data_root, sync_every_steps=2, grad_clip_norm=5.0, workers=1), "featherface_v2") \
        == "reused"


def test_the_plans_estimate_counts_the_validations_during_training(data_root, capsys):
    import re

    from ffcore.cli.study import plan_command
    from ffcore.runs.context import open_study
    from ffcore.runs.training import train_config

    full = open_study("full", data_root=data_root, device="cpu", prepare_data=False)
    # val_every 10: every tenth epoch, the last included (the 35 passes per V1 run, 40 per V2 run)
    assert train_config(full, "featherface_v1").validation_passes() == 35
    assert train_config(full, "featherface_v2").validation_passes() == 40
    assert plan_command(None, "full", data=str(data_root), images_per_second=207.0, train_images=12880) == 0
    training_only = capsys.readouterr().out
    assert plan_command(None, "full", data=str(data_root), images_per_second=207.0, train_images=12880,
                        val_images_per_second=100.0, val_images=3226) == 0
    out = capsys.readouterr().out
    passes, total = re.search(r"with (\d+) validations during training of 3226 images at 100 images/s: "
                              r"([\d.]+) hours in all", out).groups()
    train_hours = float(re.search(r"([\d.]+) hours of training in all", training_only).group(1))
    assert float(total) == pytest.approx(train_hours + int(passes) * 3226 / 100 / 3600, abs=0.06)
