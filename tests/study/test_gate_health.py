"""Gate health: a channel gate whose hidden ReLUs never fire is constant 0.5 on every channel and is
counted so; a gate that responds to its input is not."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from ffcore.eval.attention_maps import channel_gate_health
from ffcore.models.attention import SharedCBAM


class TwoLevelAttention(nn.Module):
    """The smallest model `channel_gate_health` reads: V2's attention on two feature levels of the input."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.backbone_attention = SharedCBAM((16, 16), reduction=4)

    def forward(self, x):
        features = torch.relu(self.stem(x))
        return self.backbone_attention([features, features * 2])


@pytest.fixture()
def model():
    torch.manual_seed(0)
    net = TwoLevelAttention()
    with torch.no_grad():
        for gate in net.backbone_attention.channel_gates:
            gate.mlp[0].weight.normal_(0, 1.0)
            gate.mlp[2].weight.normal_(0, 1.0)
    return net


def images(count=4):
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(3, 24, 24, generator=generator) * (1 + k) for k in range(count)]


def test_a_gate_with_dead_hidden_relus_is_constant_one_half_and_counted(model):
    with torch.no_grad():   # every hidden unit of level 1 negative on non-negative pooled features: never fires
        model.backbone_attention.channel_gates[1].mlp[0].weight.copy_(-model.backbone_attention.channel_gates[1].mlp[0].weight.abs())
    alive, dead = channel_gate_health(model, images())
    assert (dead.channels, dead.constant_channels, dead.share_constant) == (16, 16, 1.0)
    assert (dead.hidden_units, dead.dead_hidden_units) == (4, 4)
    assert dead.gate_min == dead.gate_max == 0.5
    assert alive.constant_channels == 0 and alive.dead_hidden_units < alive.hidden_units
    assert alive.gate_min < alive.gate_max and alive.images == 4


def test_the_model_is_left_as_it_was(model):
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    channel_gate_health(model, images(2))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(module._forward_hooks for module in model.modules())


def test_no_images_is_an_error(model):
    with pytest.raises(ValueError, match="at least one image"):
        channel_gate_health(model, [])
