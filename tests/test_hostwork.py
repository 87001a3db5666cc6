"""klrpn.hostwork.HostWork: which operations count as points where a GPU run's host would wait."""

import torch
import torchvision

from klrpn.hostwork import HostWork


def _count(fn):
    with HostWork() as work:
        fn()
    return work


def test_data_dependent_sizes():
    x = torch.tensor([3.0, 1.0, 2.0, 1.0])
    mask = x > 1.5
    cases = {
        "nonzero": lambda: torch.where(mask),
        "masked_select": lambda: x.masked_select(mask),
        "_unique2": lambda: torch.unique(x),
        "bincount": lambda: torch.bincount(x.long()),
        "repeat_interleave.Tensor": lambda: torch.repeat_interleave(x.long()),
        "torchvision.nms": lambda: torchvision.ops.nms(torch.tensor([[0.0, 0, 1, 1]] * 2), x[:2], 0.5),
    }
    for name, fn in cases.items():
        work = _count(fn)
        assert work.sync_ops[name] == 1 and work.sync_kinds["size"] == 1, (name, work.sync_ops)
    assert _count(lambda: torch.repeat_interleave(x.long(), output_size=7)).total_syncs == 0


def test_mask_reads_and_writes_of_tensors_but_not_of_a_python_number():
    x = torch.arange(6.0)
    mask = x > 2
    assert dict(_count(lambda: x[mask]).sync_kinds) == {"mask read": 1}
    assert dict(_count(lambda: x.__setitem__(mask, torch.ones(3))).sync_kinds) == {"mask write": 1}
    assert _count(lambda: x.__setitem__(mask, 0.0)).total_syncs == 0  # masked_fill_
    assert _count(lambda: x[torch.tensor([0, 2])]).total_syncs == 0  # an index gather


def test_scalar_reads_but_not_the_optimisers_step_counters():
    x = torch.tensor([1.0, 2.0])
    for fn in (lambda: x[0].item(), lambda: bool(x.any()), lambda: torch.equal(x, x)):
        assert dict(_count(fn).sync_kinds) == {"scalar read": 1}
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.ones(2)
    opt = torch.optim.Adam([p], foreach=False)
    assert _count(opt.step).total_syncs == 0


def test_tensors_from_python_data():
    x = torch.zeros(4)
    work = _count(lambda: torch.tensor([1.0, 2.0]))
    assert sum(work.host_data.values()) == 1
    assert not _count(lambda: x.__setitem__(1, 5.0)).host_data  # the scalar of x[i] = v
    assert not _count(lambda: x.__setitem__(x > 0, 0.0)).host_data


def test_fixed_size_operations_are_not_syncs():
    x = torch.rand(3, 50)

    def work():
        order = x.argsort(dim=1, descending=True)
        torch.empty_like(order).scatter_(1, order, torch.arange(50).expand(3, 50))
        x.topk(5, dim=1)
        torch.where(x > 0.5, x, 0.0).sum(dim=1).clamp(max=3)
        x.masked_fill(x > 0.5, float("-inf")).max(dim=1)
    counted = _count(work)
    assert counted.total_syncs == 0 and not counted.host_data and counted.ops > 8
