"""Distillation: the KD and feature terms by hand, the loss composition, adapters kept out of the student."""

from __future__ import annotations

import math

import pytest
import torch

from ffcore.checkpoint import load_checkpoint_file, save_checkpoint
from ffcore.engine import DistillConfig, feature_mse, kd_class_loss
from ffcore.engine.distill import distill
from support import tiny_config, write_tiny_wider_tree


def test_kd_loss_by_hand():
    # one prior: teacher (0, 0) -> p = (1/2, 1/2); student (ln 3, 0) at T = 1 -> q = (3/4, 1/4)
    teacher = torch.zeros(1, 1, 2)
    student = torch.tensor([[[math.log(3.0), 0.0]]])
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert float(kd_class_loss(student, teacher, temperature=1.0)) == pytest.approx(expected, rel=1e-5)
    # T = 2 softens the student to (sqrt 3, 1) / (sqrt 3 + 1), and the result is scaled by T^2 = 4
    q = torch.tensor([math.sqrt(3.0), 1.0]) / (math.sqrt(3.0) + 1.0)
    expected_t2 = 4 * float((0.5 * torch.log(0.5 / q)).sum())
    assert float(kd_class_loss(student, teacher, temperature=2.0)) == pytest.approx(expected_t2, rel=1e-5)


def test_kd_loss_is_a_mean_over_priors_and_zero_for_equal_logits():
    logits = torch.randn(2, 50, 2)
    assert float(kd_class_loss(logits, logits.clone(), 4.0)) == pytest.approx(0.0, abs=1e-6)
    one = kd_class_loss(logits[:, :1], torch.zeros(2, 1, 2), 4.0)
    repeated = kd_class_loss(logits[:, :1].expand(2, 7, 2), torch.zeros(2, 7, 2), 4.0)
    assert float(one) == pytest.approx(float(repeated), rel=1e-6)


def test_feature_mse_averages_levels_and_checks_shapes():
    a = [torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 4, 4)]
    b = [torch.ones(1, 4, 8, 8), torch.full((1, 4, 4, 4), 3.0)]
    assert float(feature_mse(a, b)) == pytest.approx((1.0 + 9.0) / 2)
    with pytest.raises(ValueError, match="level 1"):
        feature_mse(a, [b[0], torch.ones(1, 4, 2, 2)])


def test_feature_mse_over_the_levels_a_progressive_stage_matches():
    a = [torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 4, 4), torch.zeros(1, 4, 2, 2)]
    b = [torch.ones(1, 4, 8, 8), torch.full((1, 4, 4, 4), 2.0), torch.full((1, 4, 2, 2), 3.0)]
    assert float(feature_mse(a, b, levels=(2,))) == pytest.approx(9.0)
    assert float(feature_mse(a, b, levels=(1, 2))) == pytest.approx((4.0 + 9.0) / 2)
    assert float(feature_mse(a, b, levels=(0, 1, 2))) == pytest.approx(float(feature_mse(a, b)))


def test_progressive_schedule_rounds_its_boundaries_to_epochs():
    from ffcore.engine.distill import DistillConfig, progressive_levels

    stage_starts = [next(e for e in range(400) if len(progressive_levels(e, 400)) == n) for n in (1, 2, 3)]
    assert stage_starts == [0, round(400 / 3), round(800 / 3)]
    assert progressive_levels(1, 4, (0.5, 0.75)) == (2,) and progressive_levels(2, 4, (0.5, 0.75)) == (1, 2)
    with pytest.raises(ValueError, match="stage_boundaries"):
        DistillConfig(stage_boundaries=(0.7, 0.3))
    assert DistillConfig.from_dict(DistillConfig(progressive=True).to_dict()) == DistillConfig(progressive=True)


@pytest.fixture()
def teacher_checkpoint(tmp_path):
    """A (randomly initialised) retinaface_mnet025 teacher in ffcore's checkpoint format."""
    from ffcore.models import create_model

    torch.manual_seed(1)
    teacher = create_model("retinaface_mnet025")
    path = tmp_path / "teacher.pt"
    save_checkpoint(path, {"model_name": teacher.name, "model_overrides": teacher.overrides,
                           "state_dict": teacher.state_dict()})
    return path


def test_distillation_smoke_adapters_stay_out_of_the_student(tmp_path, teacher_checkpoint):
    from ffcore.models import create_model, load_pretrained

    torch.set_num_threads(1)
    root = write_tiny_wider_tree(tmp_path / "data", images=8)
    teacher_before = load_checkpoint_file(teacher_checkpoint)["state_dict"]
    config = tiny_config(root, tmp_path / "kd", model="featherface_v2", epochs=1)
    result = distill(config, DistillConfig(teacher="retinaface_mnet025", teacher_weights=str(teacher_checkpoint)))
    assert result.ok

    row = result.history[-1]
    cfg = DistillConfig()
    assert row["loss"] == pytest.approx((1 - cfg.alpha) * row["loss_task"] + cfg.alpha * row["loss_kd"]
                                        + cfg.feature_weight * row["loss_feature"], rel=1e-5)
    assert row["loss_task"] == pytest.approx(2 * row["loss_loc"] + row["loss_cls"] + row["loss_landm"], rel=1e-5)

    checkpoint = load_checkpoint_file(tmp_path / "kd" / "last.pt")
    reference = create_model("featherface_v2")
    # 32-channel student features -> 64-channel teacher features: one 1x1 conv (with bias) per level
    adapters = checkpoint["distill_adapters"]
    assert sum(v.numel() for v in adapters.values()) == 3 * (32 * 64 + 64)
    assert set(checkpoint["state_dict"]) == set(reference.state_dict())
    assert sum(p.numel() for p in result.model.parameters()) == sum(p.numel() for p in reference.parameters())
    assert checkpoint["distill_config"]["teacher"] == "retinaface_mnet025"
    student = load_pretrained("featherface_v2", tmp_path / "kd" / "best.pt")
    assert sum(p.numel() for p in student.parameters()) == sum(p.numel() for p in reference.parameters())

    # the teacher file is untouched and distillation did not need it to be trainable
    assert all(torch.equal(v, load_checkpoint_file(teacher_checkpoint)["state_dict"][k])
               for k, v in teacher_before.items())


def test_distillation_resumes_with_its_adapters(tmp_path, teacher_checkpoint):
    torch.set_num_threads(1)
    root = write_tiny_wider_tree(tmp_path / "data", images=8)
    distillation = DistillConfig(teacher="retinaface_mnet025", teacher_weights=str(teacher_checkpoint))
    straight = tiny_config(root, tmp_path / "a", model="featherface_v2", epochs=2, max_steps_per_epoch=1)
    distill(straight, distillation)
    from dataclasses import replace
    split = replace(straight, out_dir=str(tmp_path / "b"))
    distill(replace(split, stop_after_epoch=1), distillation)
    distill(split, distillation, resume=True)
    a, b = (load_checkpoint_file(tmp_path / d / "last.pt") for d in ("a", "b"))
    for key in ("state_dict", "distill_adapters"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key


def test_distillation_refuses_students_with_other_anchors():
    from ffcore.engine.distill import check_prior_compatibility
    from ffcore.models import create_model

    teacher = create_model("retinaface_mnet025")
    check_prior_compatibility(create_model("featherface_v2"), teacher)  # same anchors: fine
    with pytest.raises(ValueError, match="anchors differ"):
        check_prior_compatibility(create_model("featherface_v2_vit"), teacher)
