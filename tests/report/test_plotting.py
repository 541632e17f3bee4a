"""One display label and one colour per model, whichever figure names it."""

from __future__ import annotations

import pytest

from ffcore.report.plotting import model_style, model_styles, pretty_name


@pytest.mark.parametrize("name, label", [
    ("featherface_v1", "FeatherFace V1"),
    ("retinaface_mnet025", "RetinaFace-MNet0.25"),
    ("featherface_v2_seed2", "FeatherFace V2, seed 2"),
    ("featherface_v2_distilled", "FeatherFace V2 distilled"),
    ("retinaface_mnet025_widerface", "RetinaFace-MNet0.25 (trained on WIDER FACE)"),
    ("featherface_eca_cbam_widerface", "FeatherFace ECA-CBAM (fork, trained on WIDER FACE)"),
    ("featherface_v2_distilled_eca_cbam_widerface",
     "FeatherFace V2 distilled from FeatherFace ECA-CBAM (fork, trained on WIDER FACE)"),
    ("featherface_v1_bifpn_light", "FeatherFace V1 + BiFPN-light"),
    ("featherface_v1_eca_cbam", "FeatherFace V1 + ECA-CBAM"),
    ("featherface_v1_pruned20", "FeatherFace V1 pruned 20%"),
    ("featherface_v1_pruned20_not_finetuned", "FeatherFace V1 pruned 20% (not fine-tuned)"),
    ("blazeface_full_range", "BlazeFace full-range"),
])
def test_pretty_name_gives_one_label_per_model_and_run(name, label):
    assert pretty_name(name) == label


def test_a_run_distilled_from_the_studys_teacher_names_it():
    assert pretty_name("featherface_v2_distilled_seed1", teacher="featherface_v1") == \
        "FeatherFace V2 distilled from FeatherFace V1, seed 1"
    # a teacher named in the run wins over the study's
    assert pretty_name("featherface_v2_distilled_eca_cbam_widerface", teacher="featherface_v1").endswith(
        "from FeatherFace ECA-CBAM (fork, trained on WIDER FACE)")


def test_a_run_keeps_its_models_colour_and_no_figure_repeats_one():
    assert model_style("featherface_v2_seed1") == model_style("featherface_v2")
    assert model_style("retinaface_mnet025_widerface") == model_style("retinaface_mnet025")
    # the latency figure's models (every registered detector) and two the palette does not know
    benchmarked = ["retinaface_mnet025", "featherface_v1", "featherface_v2", "featherface_v2_ultra", "featherface_v2_vit",
                   "featherface_cbam_exact", "featherface_eca_cbam", "featherface_eca_cbam_parallel",
                   "something_new", "another_one"]
    colours = [style["color"] for style in model_styles(benchmarked).values()]
    assert len(set(colours)) == len(colours)
    # known models keep their fixed colour inside any figure
    assert model_styles(["something_new", "featherface_v1"])["featherface_v1"] == model_style("featherface_v1")
