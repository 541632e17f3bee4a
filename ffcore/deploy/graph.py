"""The deploy graph: exact rewrites of a trained detector that leave fewer, larger operators.

Each step is a transformation whose output equals the trained model's up to float rounding
(checked at 1e-5, relative to outputs larger than 1, by the tests and by `deploy_model(check=...)`):

- `fold_batchnorm`: y = gamma (conv(x) - mean) / sqrt(var + eps) + beta is a convolution
  with weight W * s and bias (b - mean) * s + beta, s = gamma / sqrt(var + eps).
- `fold_shuffle`: a channel shuffle is a fixed permutation P; a (grouped) 1x1 convolution after
  it computes W (P x) = (W P) x, so the permutation moves into the columns of a dense weight and
  the Reshape/Transpose/Reshape of the shuffle disappears. V1's block likewise.
- `merge_heads`: the class, box and landmark 1x1 convolutions of every level read the same
  features; one matrix product over the concatenated positions of all levels, with its rows
  ordered (anchor, [box, class, landmark]), produces the three outputs after one Reshape and
  one Split, in the prior order of `ffcore.anchors.make_priors`.
- `compact_attention`: the CBAM channel gate's MLP runs once on the average and max pools
  stacked together (W2 relu(W1 a) + W2 relu(W1 m) = sum over the pair of W2 relu(W1 [a, m])),
  so the gate is one Concat, two 1x1 convolutions and one ReduceSum instead of two MLPs.
- `dense_grouped_convs`: a grouped convolution with few channels per group is a dense one
  whose weight is zero off the diagonal blocks (`densify_grouped_convs`).

`deploy_model(model)` applies all of them to a copy; `DeploySteps` switches each one, so
the latency effect of every step can be measured (`ffcore.bench.export_deploy_ladder`, notebook 05).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ffcore.models.attention import ChannelGate, SpatialGate
from ffcore.models.blocks import ConvBNAct, channel_shuffle
from ffcore.models.context import DeformConvBNAct, ModulatedDeformConv2d
from ffcore.models.heads import SharedHeads, TaskHeads
from ffcore.models.necks import SameSeparableConv, SeparableConvBNReLU
from ffcore.models.shuffle import ChannelShuffleBlock, ChannelShuffleLight

DEPLOY_TOLERANCE = 1e-5


@dataclass(frozen=True)
class DeploySteps:
    """Which exact transformations `deploy_model` applies (all by default)."""

    fold_batchnorm: bool = True
    fold_shuffle: bool = True
    merge_heads: bool = True
    compact_attention: bool = True
    dense_grouped_convs: bool = True

    @classmethod
    def none(cls) -> "DeploySteps":
        return cls(**{f.name: False for f in fields(cls)})

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def cumulative(self) -> list[tuple[str, "DeploySteps"]]:
        """("literal", none), then each enabled step added in declaration order: the ladder a benchmark walks."""
        ladder, enabled = [("literal", DeploySteps.none())], {}
        for name in self.names():
            if getattr(self, name):
                enabled[name] = True
                ladder.append((f"+ {name}", DeploySteps(**{n: n in enabled for n in self.names()})))
        return ladder


# ------------------------------------------------------------------------------ batch norm

class BiasedModulatedDeformConv2d(nn.Module):
    """V1's modulated deformable convolution with a following batch norm folded into weight and bias.

    deform_conv2d is linear in its weight and adds its bias per output channel, so
    BN(deform(x; W)) = deform(x; W s) + (beta - mean s). Offsets and mask are computed as before.
    """

    def __init__(self, conv: ModulatedDeformConv2d, bn: nn.BatchNorm2d):
        super().__init__()
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        self.padding, self.implementation = conv.padding, conv.implementation
        self.offset_conv, self.mask_conv = conv.offset_conv, conv.mask_conv
        self.weight = nn.Parameter(conv.weight.detach() * scale[:, None, None, None], requires_grad=False)
        self.bias = nn.Parameter(bn.bias.detach() - bn.running_mean * scale, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.ops import deform_conv2d

        from ffcore.models.context import deform_conv2d_grid_sample, resolve_deform_implementation

        offset = self.offset_conv(x)
        mask = 2.0 * torch.sigmoid(self.mask_conv(x))
        if resolve_deform_implementation(self.implementation, x) == "grid_sample":
            return deform_conv2d_grid_sample(x, offset, self.weight, self.bias, padding=self.padding, mask=mask)
        return deform_conv2d(x, offset, self.weight, bias=self.bias, padding=self.padding, mask=mask)


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every Conv2d -> BatchNorm2d pair of the known blocks into the convolution; returns how many.

    Includes the batch norm after V1's deformable convolutions, which ONNX Runtime cannot fuse
    into a DeformConv itself (and whose per-channel parameters INT8 quantisation mishandles).
    """
    count = 0
    for module in model.modules():
        if isinstance(module, DeformConvBNAct) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv = BiasedModulatedDeformConv2d(module.conv, module.bn)
            module.bn = nn.Identity()
            count += 1
            continue
        pairs = []
        if isinstance(module, ConvBNAct) and isinstance(module.bn, nn.BatchNorm2d):
            pairs = [("conv", "bn")]
        elif isinstance(module, SeparableConvBNReLU):
            pairs = [("depthwise", "bn1"), ("pointwise", "bn2")]
        elif isinstance(module, (SameSeparableConv,)):
            pairs = [("pointwise", "bn")]
        elif isinstance(module, SpatialGate) and isinstance(module.bn, nn.BatchNorm2d):
            pairs = [("conv", "bn")]
        for conv_name, bn_name in pairs:
            bn = getattr(module, bn_name)
            if not isinstance(bn, nn.BatchNorm2d):
                continue
            setattr(module, conv_name, fuse_conv_bn_eval(getattr(module, conv_name), bn))
            setattr(module, bn_name, nn.Identity())
            count += 1
    return count


# ------------------------------------------------------------------------------ shuffles

def dense_weight(conv: nn.Conv2d) -> torch.Tensor:
    """The weight of a grouped convolution written as a dense one (zeros off the group blocks)."""
    weight = conv.weight.detach()
    if conv.groups == 1:
        return weight.clone()
    out_per_group, in_per_group = conv.out_channels // conv.groups, conv.in_channels // conv.groups
    dense = weight.new_zeros(conv.out_channels, conv.in_channels, *weight.shape[2:])
    for g in range(conv.groups):
        rows = slice(g * out_per_group, (g + 1) * out_per_group)
        dense[rows, g * in_per_group:(g + 1) * in_per_group] = weight[rows]
    return dense


def shuffle_permutation(channels: int, groups: int, order: str) -> torch.Tensor:
    """perm with channel_shuffle(x)[:, k] == x[:, perm[k]]."""
    return channel_shuffle(torch.arange(channels, dtype=torch.float64).view(1, channels, 1, 1),
                           groups, order).flatten().long()


def conv_after_permutation(conv: nn.Conv2d, permutation: torch.Tensor) -> nn.Conv2d:
    """A dense convolution c' with c'(x) == conv(x[:, permutation])."""
    dense = dense_weight(conv)
    folded = torch.empty_like(dense)
    folded[:, permutation] = dense       # column perm[k] of the new weight reads what column k read
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, 1, bias=conv.bias is not None)
    with torch.no_grad():
        out.weight.copy_(folded)
        if conv.bias is not None:
            out.bias.copy_(conv.bias.detach())
    return out


class PermutationFoldedShuffleLight(nn.Module):
    """V2's light shuffle with the permutation in the first convolution's weight (dense 1x1)."""

    def __init__(self, block: ChannelShuffleLight):
        super().__init__()
        channels = block.reduce.conv.in_channels
        self.reduce = copy.deepcopy(block.reduce)
        self.reduce.conv = conv_after_permutation(block.reduce.conv,
                                                  shuffle_permutation(channels, block.groups, "standard"))
        self.expand = block.expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.reduce(x))


class PermutationFoldedShuffleBlock(nn.Module):
    """V1's shuffle block with the permutation in the reducing 1x1 convolution's weight."""

    def __init__(self, block: ChannelShuffleBlock):
        super().__init__()
        channels = block.reduce.conv.in_channels
        self.reduce = copy.deepcopy(block.reduce)
        self.reduce.conv = conv_after_permutation(block.reduce.conv,
                                                  shuffle_permutation(channels, 2, "alternative"))
        self.depthwise, self.expand = block.depthwise, block.expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.expand(self.depthwise(self.reduce(x))))


def fold_shuffles(model: nn.Module) -> int:
    """Replace every shuffle block by its permutation-folded equivalent; returns how many."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ChannelShuffleLight):
                setattr(parent, name, PermutationFoldedShuffleLight(child))
            elif isinstance(child, ChannelShuffleBlock):
                setattr(parent, name, PermutationFoldedShuffleBlock(child))
            else:
                continue
            count += 1
    return count


# ------------------------------------------------------------------------------ heads

HEAD_PARTS = (("box", 4), ("cls", 2), ("landmark", 10))   # split order of the merged output: loc, conf, landm


class MergedHeads(nn.Module):
    """Each level's class, box and landmark 1x1 convolutions as one convolution.

    The merged convolution's output channels run anchor-major over (box 4, class 2,
    landmark 10), so one Transpose + Reshape per level gives [B, priors, 16]; the levels are
    concatenated (the prior order of `make_priors`) and split once into loc, conf, landm.
    11 operators instead of 30 for three levels.
    """

    def __init__(self, heads: TaskHeads | SharedHeads):
        super().__init__()
        if isinstance(heads, SharedHeads):
            per_level = [{part: getattr(level, part) for part, _ in HEAD_PARTS} for level in heads.levels]
        else:
            per_level = [{part: getattr(heads, part)[i] for part, _ in HEAD_PARTS} for i in range(len(heads.cls))]
        anchors = per_level[0]["cls"].out_channels // 2
        self.per_anchor = sum(size for _, size in HEAD_PARTS)
        self.levels = nn.ModuleList()
        for convs in per_level:
            rows_w, rows_b = [], []
            for a in range(anchors):
                for part, size in HEAD_PARTS:
                    conv = convs[part]
                    rows_w.append(conv.weight.detach()[a * size:(a + 1) * size])
                    rows_b.append(conv.bias.detach()[a * size:(a + 1) * size])
            weight = torch.cat(rows_w)
            merged = nn.Conv2d(weight.shape[1], weight.shape[0], 1)
            with torch.no_grad():
                merged.weight.copy_(weight)
                merged.bias.copy_(torch.cat(rows_b))
            self.levels.append(merged)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        merged = torch.cat([conv(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1, self.per_anchor)
                            for conv, x in zip(self.levels, features)], dim=1)
        loc, conf, landm = torch.split(merged, [size for _, size in HEAD_PARTS], dim=2)
        return loc, conf, landm


def merge_heads(model: nn.Module) -> int:
    heads = getattr(model, "heads", None)
    if not isinstance(heads, (TaskHeads, SharedHeads)):
        return 0
    model.heads = MergedHeads(heads)
    return 1


# ------------------------------------------------------------------------------ attention

class CompactChannelGate(nn.Module):
    """CBAM's channel gate with the shared MLP run once on the stacked [avg, max] pools."""

    def __init__(self, gate: ChannelGate):
        super().__init__()
        first, second = gate.mlp[0], gate.mlp[2]
        self.first = nn.Conv2d(first.in_features, first.out_features, 1, bias=first.bias is not None)
        self.second = nn.Conv2d(second.in_features, second.out_features, 1, bias=False)
        with torch.no_grad():
            self.first.weight.copy_(first.weight.detach()[:, :, None, None])
            if first.bias is not None:
                self.first.bias.copy_(first.bias.detach())
            self.second.weight.copy_(second.weight.detach()[:, :, None, None])
        # The output bias enters once per pool: twice in the sum.
        bias = 2 * second.bias.detach() if second.bias is not None else None
        self.register_buffer("second_bias", None if bias is None else bias[None, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pools = torch.cat([x.mean(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)], dim=3)  # [B, C, 1, 2]
        logits = self.second(torch.relu(self.first(pools))).sum(dim=3, keepdim=True)
        if self.second_bias is not None:
            logits = logits + self.second_bias
        return x * torch.sigmoid(logits)


def compact_attention(model: nn.Module) -> int:
    """Replace every CBAM channel gate by `CompactChannelGate`; returns how many.

    (BiFPN's fusion weights need no rewrite: their normalisation reads only initializers, which
    ONNX Runtime folds into constants when it loads the graph.)
    """
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ChannelGate):
                setattr(parent, name, CompactChannelGate(child))
                count += 1
            elif isinstance(child, nn.ModuleList):
                for index, item in enumerate(child):
                    if isinstance(item, ChannelGate):
                        child[index] = CompactChannelGate(item)
                        count += 1
    return count


# ------------------------------------------------------------------------------ grouped convolutions

def densify_grouped_convs(model: nn.Module) -> int:
    """Write every grouped (not depthwise) convolution as a dense one with block-diagonal weights; returns how many.

    Exact (the added weights are zeros). V2's grouped convolutions have 2-4 channels per
    group: ONNX Runtime runs such a convolution group by group, each a tiny im2col + GEMM,
    where one dense GEMM with 4x the multiply-adds costs less. Depthwise convolutions keep
    their dedicated kernel.
    """
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Conv2d) or child.groups == 1 or child.groups == child.in_channels:
                continue
            dense = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride, child.padding,
                              child.dilation, 1, bias=child.bias is not None, padding_mode=child.padding_mode)
            with torch.no_grad():
                dense.weight.copy_(dense_weight(child))
                if child.bias is not None:
                    dense.bias.copy_(child.bias.detach())
            setattr(parent, name, dense)
            count += 1
    return count


# ------------------------------------------------------------------------------ entry point

def deploy_model(model: nn.Module, steps: DeploySteps = DeploySteps(),
                 check: tuple[int, int] | None = (160, 224), tolerance: float = DEPLOY_TOLERANCE) -> nn.Module:
    """A copy of `model` (eval, CPU, float32) with the `steps` applied.

    With `check` (H, W), runs both on the same sample input and raises `DeployError` when
    any output differs by more than `tolerance` x max(1, largest output magnitude): float32
    rounding of a rewritten sum grows with the values (the trained RetinaFace's landmark
    offsets reach tens, where 1e-5 absolute is below one unit in the last place).
    """
    model = model.eval().float().cpu()
    deployed = copy.deepcopy(model).eval()
    applied = {}
    if steps.fold_batchnorm:
        applied["fold_batchnorm"] = fold_batchnorm(deployed)
    if steps.fold_shuffle:
        applied["fold_shuffle"] = fold_shuffles(deployed)
    if steps.merge_heads:
        applied["merge_heads"] = merge_heads(deployed)
    if steps.compact_attention:
        applied["compact_attention"] = compact_attention(deployed)
    if steps.dense_grouped_convs:
        applied["dense_grouped_convs"] = densify_grouped_convs(deployed)
    deployed.deploy_steps = steps
    deployed.deploy_applied = applied
    for parameter in deployed.parameters():
        parameter.requires_grad_(False)
    # Nothing rewritten (a model without the known blocks): the copy is the model.
    if check is not None and any(applied.values()):
        difference, scale = max_output_difference(model, deployed, check, with_scale=True)
        if difference > tolerance * max(1.0, scale):
            raise DeployError(f"deploy graph of {getattr(model, 'name', type(model).__name__)} ({steps}) differs from "
                              f"the trained model by {difference:.3g} > {tolerance:g} x max(1, {scale:.3g}) "
                              f"at {check[0]}x{check[1]}")
    return deployed


class DeployError(RuntimeError):
    """A deploy transformation that changed the model's outputs."""


def max_output_difference(reference: nn.Module, candidate: nn.Module, size: tuple[int, int] = (160, 224),
                          batch: int = 2, with_scale: bool = False):
    """max |reference - candidate| over loc, conf, landm on the sample input (`ffcore.preprocess.sample_batch`).

    `with_scale`: also return max |reference| (the outputs' magnitude the difference compares with).
    """
    from ffcore.preprocess import sample_batch

    x = sample_batch(*size, batch=batch)
    with torch.no_grad():
        expected, got = reference.eval()(x)[:3], candidate.eval()(x)[:3]
    difference = max(float((e - g).abs().max()) for e, g in zip(expected, got))
    if with_scale:
        return difference, max(float(e.abs().max()) for e in expected)
    return difference


__all__ = ["DEPLOY_TOLERANCE", "DeployError", "DeploySteps", "MergedHeads", "CompactChannelGate", "deploy_model",
           "fold_batchnorm", "fold_shuffles", "merge_heads", "compact_attention", "densify_grouped_convs",
           "max_output_difference"]
