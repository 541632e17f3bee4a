"""V2-ViT starts from random weights and V2 from ImageNet: the profiles that train V2-ViT also train V2
from random weights, the control that V2-ViT is compared with as well."""

from __future__ import annotations

from ffcore.runs.plan import is_random_start, model_of_run, planned_run, planned_runs
from ffcore.runs.profiles import get_profile


def test_profiles_with_v2_vit_train_v2_from_random_weights_over_the_model_seeds():
    for name in ("synthetic_seeds", "full"):
        profile = get_profile(name)
        controls = [run for run in planned_runs(profile) if is_random_start(run)]
        assert len(controls) == len(profile.model_seeds) >= 3, name
        job = planned_run(profile, controls[0])
        assert (job.model, job.kind) == ("featherface_v2", "train")
        assert (job.preset, job.epochs) == (profile.student_preset, profile.student_epochs)   # V2's recipe
    # a profile without V2-ViT has nothing to control
    assert not [run for run in planned_runs(get_profile("synthetic")) if is_random_start(run)]
    assert model_of_run("featherface_v2_random_start_seed2") == "featherface_v2"
    assert not is_random_start("featherface_v2_seed2") and not is_random_start("featherface_v2_distilled")


def test_the_control_trains_without_the_imagenet_backbone_and_v2_with_it(tmp_path, monkeypatch):
    from ffcore.runs.context import open_study
    from ffcore.runs.training import _train_config

    monkeypatch.setenv("FFCORE_RESULTS", str(tmp_path / "results"))
    study = open_study("synthetic_seeds", data_root=tmp_path / "data", prepare_data=False)
    control = _train_config(study, planned_run(study.profile, "featherface_v2_random_start"))
    plain = _train_config(study, planned_run(study.profile, "featherface_v2"))
    assert control.pretrained_backbone is False and plain.pretrained_backbone is True
    assert {k: v for k, v in control.to_dict().items() if k not in ("pretrained_backbone", "out_dir")} == \
        {k: v for k, v in plain.to_dict().items() if k not in ("pretrained_backbone", "out_dir")}


def test_the_full_study_asks_the_random_start_question():
    from ffcore.study.questions import study_questions

    texts = [q.text for q in study_questions(get_profile("full"))]
    assert any("V2-ViT against V2 from random weights" in text for text in texts)
