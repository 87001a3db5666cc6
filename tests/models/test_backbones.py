"""Backbone parts: the frozen BatchNorm that folds its statistics once."""

import copy

import pytest
import torch
from torchvision.ops.misc import FrozenBatchNorm2d

from klrpn.config import load_cell
from klrpn.models import build_model
from klrpn.models.backbones import FoldedFrozenBatchNorm2d


def _pair(channels=6, seed=0):
    """A folded BN and torchvision's, with the same random (non-trivial) buffers."""
    g = torch.Generator().manual_seed(seed)
    state = {"weight": torch.randn(channels, generator=g), "bias": torch.randn(channels, generator=g),
             "running_mean": torch.randn(channels, generator=g),
             "running_var": torch.rand(channels, generator=g) + 0.1}
    folded, reference = FoldedFrozenBatchNorm2d(channels), FrozenBatchNorm2d(channels)
    folded.load_state_dict(state)
    reference.load_state_dict(state)
    return folded, reference


def _run(bn, x):
    x = x.detach().clone().requires_grad_(True)
    y = bn(x)
    (y * torch.arange(y.numel(), dtype=y.dtype).reshape(y.shape).cos()).sum().backward()
    return y.detach(), x.grad


def test_folded_bn_refolds_for_new_buffer_tensors_of_the_same_version():
    """A module never loaded: its buffers and their float64 copies are all at version 0."""
    folded, reference = FoldedFrozenBatchNorm2d(3), FrozenBatchNorm2d(3)
    x = torch.randn(1, 3, 2, 2, dtype=torch.float64)
    folded(x.float())
    folded, reference = folded.double(), reference.double()
    assert torch.equal(folded(x), reference(x))  # scale folded in float64, as torchvision's


@pytest.mark.parametrize("autocast", [False, True])
def test_folded_bn_is_torchvisions_bit_for_bit(autocast):
    folded, reference = _pair()
    x = torch.randn(2, 6, 5, 7, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        for _ in range(2):  # the first call folds, the second reuses
            (y, gx), (y_ref, gx_ref) = _run(folded, x), _run(reference, x)
            assert y.dtype == y_ref.dtype and torch.equal(y, y_ref) and torch.equal(gx, gx_ref)


def test_folded_bn_refolds_whenever_its_buffers_change():
    folded, reference = _pair()
    x = torch.randn(1, 6, 3, 3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(folded(x), reference(x))
    # load_state_dict (an in-place copy into the buffers)
    other, _ = _pair(seed=5)
    folded.load_state_dict(other.state_dict())
    reference.load_state_dict(other.state_dict())
    assert torch.equal(folded(x), reference(x))
    # an in-place edit (tame_untrained_resnet's fill_, a user's mul_)
    with torch.no_grad():
        folded.weight.mul_(3.0)
        reference.weight.mul_(3.0)
    assert torch.equal(folded(x), reference(x))
    # new buffer tensors (.to()) and a copy of the module
    folded, reference = folded.double(), reference.double()
    assert torch.equal(folded(x.double()), reference(x.double()))
    twin = copy.deepcopy(folded)
    with torch.no_grad():
        twin.running_var.add_(1.0)
    assert torch.equal(folded(x.double()), reference(x.double()))
    with torch.no_grad():
        reference.running_var.add_(1.0)
    assert torch.equal(twin(x.double()), reference(x.double()))


def test_folded_bn_runs_two_operations_once_folded(dispatched):
    folded, _ = _pair()
    x = torch.randn(1, 6, 3, 3)
    with dispatched() as first:
        folded(x)
    with dispatched() as second:
        folded(x)
    # torchvision's forward on every call: 4 reshapes, add, rsqrt, mul, mul, sub; mul, add
    assert first.names == ["view"] * 4 + ["add", "rsqrt", "mul", "mul", "sub", "mul", "add"]
    assert second.names == ["mul", "add"]


@pytest.mark.parametrize("cell", ["coco-faster_rcnn-resnet101-klrpn", "voc07-rfcn-resnet101-rpn"])
def test_resnet_cells_use_only_the_folded_bn(cell):
    model = build_model(load_cell(cell, "smoke"), load_pretrained=False)
    bns = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert bns and all(type(m) is FoldedFrozenBatchNorm2d for m in bns)
