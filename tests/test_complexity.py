"""Specification of ffcore.complexity: true vs thop parameter counts (thop itself, checked against
the structural account of what it cannot see) and fvcore FLOPs."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn as nn

from ffcore.models import create_model, list_models
from ffcore.models.context import ModulatedDeformConv2d
from ffcore.cli import main
from ffcore.complexity import (count_flops, explain_thop_difference, parameter_counts, thop_blind_spots,
                               thop_profile)


pytestmark = pytest.mark.usefixtures("one_thread")


def row(table, part):
    return table.set_index("part").loc[part]


def test_thop_column_comes_from_the_pinned_thop():
    import warnings
    from importlib.metadata import version

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # thop 0.1.1 imports distutils.version
        import thop

    assert version("thop") == "0.1.1-2209072238"   # 0.1.1.post2209072238 as pip normalises it
    model = create_model("featherface_v1")
    direct_macs, direct_params = thop.profile(copy.deepcopy(model), inputs=(torch.zeros(1, 3, 64, 64),),
                                              verbose=False)
    assert row(parameter_counts(model), "total")["thop_parameters"] == int(direct_params)
    assert thop_profile(model)["macs"] == int(direct_macs) > 0


def test_thop_leaves_the_model_untouched():
    model = create_model("featherface_v2")
    keys = set(model.state_dict())
    thop_profile(model)
    assert set(model.state_dict()) == keys   # thop's total_ops / total_params buffers stay on its copy


def test_featherface_v1_true_and_thop_counts():
    table = parameter_counts(create_model("featherface_v1"))
    assert row(table, "total")["parameters"] == 592_371
    assert row(table, "total")["thop_parameters"] == 488_661  # the paper's "0.49M"
    # thop misses the deform_conv2d weights (3 levels x 34,560) and the 30 BiFPN fusion weights
    assert row(table, "context")["missed_by_thop"] == 103_680
    assert row(table, "neck")["missed_by_thop"] == 30
    assert table[table.part != "total"]["parameters"].sum() == 592_371
    assert row(table, "backbone")["parameters"] == 213_072


def test_thop_difference_is_explained_with_counts():
    model = create_model("featherface_v1")
    assert thop_blind_spots(model) == {"deform_conv2d": 3 * 34_560, "no_rule": 30, "not_run": 0}
    text = explain_thop_difference(model)
    assert "103,680" in text and "deform_conv2d" in text and "30 " in text
    assert explain_thop_difference(create_model("retinaface_mnet025")) == "thop counts every parameter of this model."


def test_retinaface_and_v2_tables():
    retina = parameter_counts(create_model("retinaface_mnet025"))
    assert row(retina, "total")["parameters"] == row(retina, "total")["thop_parameters"] == 426_608
    v2 = parameter_counts(create_model("featherface_v2"))
    assert row(v2, "total")["parameters"] == 256_156
    assert row(v2, "neck")["missed_by_thop"] == 20  # two BiFPN_Light cells x 10 fusion weights


def test_thop_misses_layers_a_forward_skips():
    """V2 Ultra's dynamic sharing skips the SSH when the batch's complexity score is <= 0.5."""
    model = create_model("featherface_v2_ultra")
    with torch.no_grad():
        model.techniques["dynamic_sharing"].complexity_gate.weight.fill_(-10.0)
        model.techniques["dynamic_sharing"].intensity_control.fill_(1.0)
    true_count = sum(p.numel() for p in model.parameters())
    blind = thop_blind_spots(model)
    context = sum(p.numel() for p in model.context.parameters())
    # 6 fusion weights + the 20 intensity values have no thop rule; the three SSH never run
    assert blind == {"deform_conv2d": 0, "no_rule": 6 + 20, "not_run": context}
    assert thop_profile(model)["parameters"] == true_count - sum(blind.values())


class _DeformOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.deform = ModulatedDeformConv2d(3, 5)

    def forward(self, x):
        return self.deform(x)


def test_flop_handle_counts_deform_conv_multiply_adds():
    flops = count_flops(_DeformOnly(), 16, 12)
    positions = 16 * 12
    per_position_macs = 9 * 3  # 3x3 kernel over 3 input channels
    expected = positions * per_position_macs * (5 + 18 + 9)  # deformable weight + offset conv + mask conv
    assert flops["deform"] == flops["total"] == expected


def test_count_flops_per_part_sums_to_total():
    flops = count_flops(create_model("featherface_v2"), 64, 96)
    parts = {k: v for k, v in flops.items() if k != "total"}
    assert set(parts) == {"backbone", "backbone_attention", "neck", "neck_attention", "context", "shuffle", "heads"}
    assert sum(parts.values()) == flops["total"] > 0
    # first conv alone: 3x3x3 MACs x 8 channels x 32x48 outputs
    assert flops["backbone"] > 3 * 3 * 3 * 8 * 32 * 48


def test_params_command_prints_and_writes_json(tmp_path, capsys):
    out = tmp_path / "params.json"
    assert main(["params", "--models", "featherface_v1", "--size", "64", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "488661" in printed and "592371" in printed and "deform_conv2d" in printed
    report = json.loads(out.read_text())
    total = [r for r in report["featherface_v1"]["table"] if r["part"] == "total"][0]
    assert total["thop_parameters"] == 488_661
    assert "multiply-add" in report["featherface_v1"]["flops_note"]


@pytest.mark.parametrize("name", list_models())
def test_thop_count_is_the_true_count_less_what_it_cannot_see(name):
    """For every registered model: thop's own figure (per part and in total) = true count minus
    the parameters the structural account says thop cannot count."""
    model = create_model(name)
    table = parameter_counts(model)
    parts, total = table.iloc[:-1], table.iloc[-1]
    assert total["part"] == "total"
    assert int(parts["parameters"].sum()) == int(total["parameters"]) == sum(p.numel() for p in model.parameters())
    assert int(parts["thop_parameters"].sum()) == int(total["thop_parameters"])
    assert int(total["parameters"]) - int(total["thop_parameters"]) == sum(thop_blind_spots(model).values())
