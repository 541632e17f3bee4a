"""The study layer's bookkeeping: run names, recipes shared by the sides of each comparison, the
declared ablation rows, and an AP cache keyed on the evaluator's code that never hides a bad file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ffcore.runs.context import open_study


@pytest.fixture()
def study(tmp_path, monkeypatch):
    monkeypatch.setenv("FFCORE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("FFCORE_FIGURES", str(tmp_path / "figures"))
    return open_study("synthetic", data_root=tmp_path / "data", prepare_data=False)


def test_run_names_say_model_seed_and_teacher(study):
    from ffcore.runs.plan import model_of_run, seeded_run, split_seed, teacher_of_run

    assert seeded_run("featherface_v2", 0) == "featherface_v2" and seeded_run("featherface_v2", 2) == "featherface_v2_seed2"
    assert split_seed("featherface_v2_distilled_seed1") == ("featherface_v2_distilled", 1)
    for run, model in (("featherface_v2_distilled_seed1", "featherface_v2"),
                       ("featherface_v2_distilled_eca_cbam_widerface", "featherface_v2"),
                       ("featherface_v2_pruned20_not_finetuned", "featherface_v2_pruned20"),
                       ("featherface_eca_cbam_widerface", "featherface_eca_cbam"),
                       ("featherface_v1_ssh_grouped", "featherface_v1_ssh_grouped")):
        assert model_of_run(run) == model, run
    assert teacher_of_run(study.profile, "featherface_v2_distilled_seed2").model == "featherface_v1"
    real = teacher_of_run(study.profile, "featherface_v2_distilled_eca_cbam_widerface")
    assert real.model == "featherface_eca_cbam" and real.shared_weights is not None
    assert teacher_of_run(study.profile, "featherface_v2_seed1") is None
    with pytest.raises(KeyError, match="unknown teacher"):
        teacher_of_run(study.profile, "featherface_v2_distilled_nobody")


def test_each_comparison_shares_one_recipe(study):
    from ffcore.runs.plan import recipe

    v1 = recipe(study.profile, "featherface_v1")
    assert all(recipe(study.profile, m) == v1 for m in ("featherface_v1_ssh_grouped", "featherface_v1_eca_cbam"))
    # V2 alone, V2 distilled (same model) and V2's variants
    assert recipe(study.profile, "featherface_v2") == recipe(study.profile, "featherface_v2_vit")
    full = open_study("full", data_root=study.data_root, prepare_data=False)
    assert recipe(full.profile, "featherface_v2") == ("v2_thesis", 400) and recipe(full.profile, "featherface_v1")[0] == "featherface_paper"


def test_ablation_rows_are_the_declared_one_part_swaps(study):
    from dataclasses import fields

    from ffcore.models.zoo import DETECTOR_CONFIGS
    from ffcore.study.ablations import ablation_models, one_part_swaps
    from ffcore.runs.plan import planned_runs

    swaps = one_part_swaps()
    # Expected rows found from the configs themselves, field by field: a registered detector whose
    # config differs from V1's in the fields of exactly one part (the two attention stages are one
    # part), width and everything else equal.
    v1 = DETECTOR_CONFIGS["featherface_v1"][0]
    parts = [{"backbone"}, {"backbone_attention", "neck_attention"}, {"neck"}, {"context"}, {"shuffle"}, {"head"}]
    expected = []
    for name, (config, _) in DETECTOR_CONFIGS.items():
        changed = {f.name for f in fields(config) if getattr(config, f.name) != getattr(v1, f.name)}
        if changed and any(changed <= part for part in parts):
            expected.append(name)
    assert sorted(swaps) == sorted(expected) and len(swaps) >= 5
    assert not any("pruned" in m for m in ablation_models())      # pruned variants have their own table
    full = open_study("full", data_root=study.data_root, prepare_data=False)
    runs = planned_runs(full.profile)
    assert len(runs) == len(set(runs))
    assert {"featherface_v2_seed2", "featherface_v2_distilled_seed2", "featherface_v1_pruned20",
            "featherface_v2_pruned20", *swaps} <= set(runs)


def test_a_profile_trains_the_rows_it_chooses_and_nothing_else(study, tmp_path):
    from dataclasses import replace

    from ffcore.study.ablations import one_part_swaps, study_swaps, study_v2_variants
    from ffcore.runs.plan import planned_runs, widerface_teacher_runs

    chosen = study.profile.ablation_swaps
    assert chosen and study_swaps(study.profile) == [s for s in one_part_swaps() if s in chosen]
    assert study_v2_variants(study.profile) == [] and widerface_teacher_runs(study.profile) == []
    runs = planned_runs(study.profile)
    assert set(chosen) <= set(runs) and not set(one_part_swaps()) - set(chosen) & set(runs)
    assert len(runs) == 1 + 2 * len(study.profile.seeds) + len(chosen) + 2   # + the two pruned fine-tunes
    bad = open_study(replace(study.profile, ablation_swaps=("featherface_v1_nothing",)), data_root=tmp_path / "d",
                     prepare_data=False)
    with pytest.raises(KeyError, match="ablation_swaps names featherface_v1_nothing"):
        study_swaps(bad.profile)


def test_ap_cache_is_keyed_on_the_checkpoint_and_both_codes_and_a_bad_cache_is_an_error(study):
    from ffcore.study.evaluation import _cache_key, evaluate_run, evaluation_code_version, model_code_version
    from ffcore.runs.plan import reference_runs
    from ffcore.runs.training import ensure_checkpoint

    if "retinaface_mnet025_widerface" not in reference_runs():
        pytest.skip("shared RetinaFace weights absent")
    run = "retinaface_mnet025_widerface"
    ensure_checkpoint(study, run)
    key = _cache_key(study, run)
    assert key["evaluator_code"] == evaluation_code_version() and len(key["evaluator_code"]) == 16
    assert key["model_code"] == model_code_version() and len(key["model_code"]) == 16
    assert key["checkpoint"] == study.used_checkpoints[run]
    study.cache_dir.mkdir(parents=True)
    (study.cache_dir / f"eval_{run}.json").write_text(json.dumps(key))
    (study.cache_dir / f"eval_{run}.pt").write_bytes(b"not a state file")
    with pytest.raises(RuntimeError, match=f"eval_{run}.pt"):
        evaluate_run(study, run)


def test_the_evaluation_code_version_covers_the_modules_that_choose_and_order_the_images():
    from ffcore.study.evaluation import evaluation_modules

    modules = evaluation_modules()
    # the validation index and the tree layout select and order the evaluation images
    assert {"ffcore.data.validation", "ffcore.data.layout", "ffcore.eval.protocol"} <= set(modules)
    # followed through imports without being listed: the annotation reader the layout uses
    assert "ffcore.data.annotations" in modules
    assert not any(name.startswith("ffcore.models") for name in modules)   # versioned by model_code_version


def test_the_model_code_version_follows_the_models_package_and_postprocess_only(tmp_path):
    import shutil

    from ffcore.study.evaluation import model_code_version

    package = Path(__file__).resolve().parents[2] / "ffcore"
    copy = tmp_path / "ffcore"
    shutil.copytree(package / "models", copy / "models", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(package / "postprocess.py", copy / "postprocess.py")
    shutil.copy(package / "paths.py", copy / "paths.py")
    assert model_code_version(copy) == model_code_version()
    versions = [model_code_version(copy)]
    (copy / "paths.py").write_text((copy / "paths.py").read_text() + "\n# not model code\n")
    assert model_code_version(copy) == versions[-1]
    for changed in ("models/necks.py", "models/loading.py", "postprocess.py"):
        (copy / changed).write_text((copy / changed).read_text() + "\n# changed\n")
        versions.append(model_code_version(copy))
    (copy / "models" / "new_part.py").write_text("WIDTH = 8\n")     # a module nothing imports yet
    versions.append(model_code_version(copy))
    assert len(set(versions)) == len(versions) == 5


def test_a_seed_offset_shifts_every_trained_run_and_its_name(study):
    from dataclasses import replace

    from ffcore.study.comparisons import arm_runs
    from ffcore.runs.plan import planned_run
    from ffcore.runs.plan import planned_runs, split_seed
    from ffcore.runs.training import _train_config, study_run

    shifted = open_study(replace(study.profile, seed_offset=100), data_root=study.data_root, prepare_data=False)
    first, second = planned_runs(study.profile), planned_runs(shifted.profile)
    assert len(first) == len(second) and not set(first) & set(second)
    assert all(split_seed(run)[1] >= 100 for run in second)
    assert study_run(shifted, "featherface_v1") == "featherface_v1_seed100"
    assert study_run(shifted, "featherface_v2", 2) == "featherface_v2_seed102"
    assert list(arm_runs(shifted, "featherface_v2")) == [100 + s for s in study.profile.seeds]
    assert _train_config(shifted, planned_run(shifted.profile, "featherface_v2_seed101")).seed == study.profile.seed + 101
    with pytest.raises(ValueError, match="seed_offset 100"):   # an unshifted name would reuse the first run's seed
        planned_run(shifted.profile, "featherface_v1")
    pruned = planned_run(shifted.profile, "featherface_v2_pruned20_seed100")
    assert pruned.depends_on == ("featherface_v2_seed100",)
    assert pruned.companions == ("featherface_v2_pruned20_not_finetuned_seed100",)
    with pytest.raises(ValueError, match="without a seed"):
        study_run(shifted, "featherface_v2_seed3")


def test_the_evaluation_split_is_the_held_out_test_split_when_the_data_has_one(tmp_path, monkeypatch):
    from ffcore.data.layout import HELDOUT_TEST_DIR
    from ffcore.runs.datasets import evaluation_split

    monkeypatch.setenv("FFCORE_RESULTS", str(tmp_path / "results"))
    smoke = open_study("smoke", data_root=tmp_path / "smoke_data")   # generates the data, test split included
    split = evaluation_split(smoke)
    assert split.name == "test" and split.root == smoke.data_root / HELDOUT_TEST_DIR
    assert "held-out" in split.note
    full = open_study("full", data_root=tmp_path / "widerface", prepare_data=False)
    split = evaluation_split(full)
    assert split.name == "validation" and "WIDER FACE publishes no test labels" in split.note
    bare = open_study("smoke", data_root=tmp_path / "elsewhere", prepare_data=False)
    with pytest.warns(UserWarning, match="no complete held-out test split"):
        assert evaluation_split(bare).name == "validation"


def test_real_photo_paragraph_gives_recall_and_precision_model_by_model(study):
    import pandas as pd

    from ffcore.study.detections import describe_real_photo_check

    rows = []
    for run, image, faces, detections, matched in (
            ("featherface_v1", "crowd.jpg", 27, 9, 7), ("featherface_v1", "group.jpg", 6, 2, 2),
            ("featherface_v2", "crowd.jpg", 27, 40, 17), ("featherface_v2", "group.jpg", 6, 10, 5),
            ("featherface_v2_seed1", "crowd.jpg", 27, 0, 0), ("featherface_v2_seed1", "group.jpg", 6, 0, 0),
            ("retinaface_mnet025_widerface", "crowd.jpg", 27, 27, 27)):
        rows.append({"run": run, "trained on": "WIDER FACE (shared weights)" if "widerface" in run else "synthetic",
                     "image": image, "reference": "retinaface_mnet025_widerface", "reference faces": faces,
                     "detections >= 0.5": detections, "matched": matched})
    study.tables_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(study.tables_dir / "real_photo_check.csv", index=False)
    text = describe_real_photo_check(study).data
    assert "featherface_v1: recall 27 % (9/33), precision 82 % (9/11)" in text
    # V2's two runs: a range over the runs; the run without a detection has no precision
    assert "featherface_v2 (2 runs): recall 0-67 %, precision n/a in some runs (no detection)" in text
    assert "retinaface" not in text.split("\n\n- ")[1]     # the reference detector is not one of the models


def test_every_arm_keeps_its_final_epoch_plain_and_distilled_alike(study):
    from ffcore.runs.plan import study_plan
    from ffcore.runs.profiles import get_profile
    from ffcore.runs.training import CHECKPOINT_RULE, _train_config, expected_fingerprint

    assert CHECKPOINT_RULE == "final"
    for profile in ("synthetic", "full"):
        ctx = open_study(get_profile(profile), data_root=study.data_root, prepare_data=False)
        for job in study_plan(ctx.profile):
            assert _train_config(ctx, job).best_metric == "final", (profile, job.name)
    # the rule is part of the fingerprint: a run kept by another rule is stale
    job = study_plan(study.profile)[0]          # V1: depends on nothing, so its fingerprint is known now
    assert expected_fingerprint(study, job)["train.best_metric"] == "final"
