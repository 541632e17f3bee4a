"""Structured L1 pruning of the SSH context modules."""

import pytest
import torch

from ffcore.models import create_model
from ffcore.pruning import (build_pruned, context_modules, context_parameters, prunable_layers, prune_context,
                            pruning_table, unit_scores, units_to_remove)


def _randomised(name, seed=0):
    """A model with random BN statistics and affine parameters, so pruned channels matter."""
    torch.manual_seed(seed)
    model = create_model(name)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
    return model.eval()


def test_allocation_removes_a_fifth_of_the_internal_channels():
    v2 = prunable_layers(context_modules(create_model("featherface_v2"))[0])
    # V2: 16 + 8 + 8 + 8 = 40 internal channels in slices of 4 (one channel of each of the 4 groups)
    assert [(l.path, l.channels, l.groups) for l in v2] == [
        ("conv3x3.reduce", 16, 4), ("conv5x5_1.reduce", 8, 4), ("conv5x5_1.spatial", 8, 4), ("conv7x7_2", 8, 4)]
    assert units_to_remove(v2, 0.2) == [1, 1, 0, 0]          # 8 of 40 channels
    assert units_to_remove(v2, 0.0) == [0, 0, 0, 0]
    assert units_to_remove(v2, 0.9) == [3, 1, 1, 1]          # at least one slice survives per layer
    plain = prunable_layers(context_modules(create_model("retinaface_mnet025"))[0])
    assert units_to_remove(plain, 0.2) == [3, 3]             # round(0.2 * 32) = 6
    with pytest.raises(ValueError, match="ratio"):
        units_to_remove(plain, 1.0)


@pytest.mark.parametrize("name, expected_context", [
    # V2 per SSH: reduce 32->16 loses 4 rows (4*32) + BN (4*2); spatial 16->16 g4 loses 4 in (16*1*9);
    # reduce 32->8 loses 4 rows (4*32) + BN (8); spatial 8->8 g4 loses 4 in (8*9). 6192 / 3 = 2064 per SSH.
    ("featherface_v2", 3 * (2064 - (128 + 8 + 144) - (128 + 8 + 72))),
    # RetinaFace per SSH: conv5x5_1 64->16 loses 3 rows (3*64*9) + BN (6); its consumers (16->16 twice)
    # lose 3 inputs each (2*3*16*9); conv7x7_2 then loses 3 rows of its 13 remaining inputs (3*13*9) + BN (6)
    # and conv7x7_3 3 inputs (3*16*9).
    ("retinaface_mnet025", 3 * (34752 - (1728 + 6) - 864 - (351 + 6) - 432)),
])
def test_pruned_model_is_smaller_by_the_expected_amount_and_runs(name, expected_context):
    model = _randomised(name)
    pruned = prune_context(model, 0.2)
    assert context_parameters(pruned) == expected_context
    removed = context_parameters(model) - expected_context
    assert sum(p.numel() for p in pruned.parameters()) == sum(p.numel() for p in model.parameters()) - removed
    x = torch.randn(2, 3, 96, 128) * 50
    with torch.no_grad():
        outputs, pruned_outputs = model(x), pruned(x)
    for a, b in zip(outputs, pruned_outputs):
        assert a.shape == b.shape and torch.isfinite(b).all()
    assert not torch.allclose(outputs[1], pruned_outputs[1])  # it did remove live channels
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in _randomised(name).parameters())


def test_l1_picks_dead_channels_and_pruning_them_preserves_the_function():
    """Channels whose filters are zero and whose BN outputs zero contribute nothing: removing them is exact."""
    model = _randomised("featherface_v2")
    for ssh in context_modules(model):
        for layer in prunable_layers(ssh):
            if layer.path not in ("conv3x3.reduce", "conv5x5_1.reduce"):
                continue
            dead = torch.tensor([g * layer.units + 1 for g in range(layer.groups)])   # slice 1 of every group
            with torch.no_grad():
                layer.producer.conv.weight[dead] = 0.0
                layer.producer.bn.running_mean[dead] = 0.0
                layer.producer.bn.bias[dead] = 0.0
            assert int(torch.argmin(unit_scores(layer))) == 1
    pruned = prune_context(model, 0.2)
    x = torch.randn(1, 3, 128, 96) * 50
    with torch.no_grad():
        for a, b in zip(model(x), pruned(x)):
            assert torch.allclose(a, b, atol=1e-5)


def test_registered_variant_reloads_a_pruned_state_dict():
    model = _randomised("featherface_v1", seed=1)
    pruned = prune_context(model, 0.2).eval()
    assert pruned.name == "featherface_v1_pruned20"
    rebuilt = create_model("featherface_v1_pruned20")
    rebuilt.load_state_dict(pruned.state_dict())   # strict: identical keys and shapes
    rebuilt.eval()
    x = torch.randn(1, 3, 64, 64) * 50
    with torch.no_grad():
        for a, b in zip(pruned(x), rebuilt(x)):
            assert torch.equal(a, b)
    assert sum(p.numel() for p in build_pruned("featherface_v2").parameters()) == \
        sum(p.numel() for p in prune_context(create_model("featherface_v2")).parameters())


def test_pruning_table_reports_parameter_reduction():
    table = pruning_table(create_model("featherface_v2"), ratios=(0.0, 0.2), flops=False)
    assert list(table.ratio) == [0.0, 0.2]
    assert table.parameters.iloc[0] == 256_156
    assert table.parameters.iloc[0] - table.parameters.iloc[1] == 6192 - 3 * (2064 - 488)
    assert table.parameter_reduction.iloc[1] > 0
