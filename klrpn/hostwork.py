"""The host-side work of a block of PyTorch code, counted on any device: the operations it
dispatches and the points where, on a GPU, the host would wait for the device.

On a GPU the host launches one kernel per dispatched operation, and every operation whose
output size depends on the data, or that reads a value back, drains the device's queue first.
Both are properties of the code, not of the device, so :class:`HostWork` (a
``TorchDispatchMode``) counts them on the CPU too. What it counts as a sync point:

* output sizes that depend on the data: ``nonzero`` (also behind ``torch.where(mask)`` and
  ``argwhere``), ``masked_select``, every ``unique`` variant, ``bincount``,
  ``repeat_interleave`` without ``output_size``, torchvision's NMS;
* boolean-mask reads (``x[mask]``: ``aten.index`` with a bool index) and boolean-mask writes of
  a tensor (``x[mask] = t``: ``index_put`` with a bool index). ATen turns a write of one value
  given as a Python number (``x[mask] = 0``) into ``masked_fill_``, which is not one;
* scalar reads: ``.item()``, ``int(t)``, ``bool(t)`` (``_local_scalar_dense``) and
  ``torch.equal``, except on the optimisers' step counters, which live on the CPU also in a
  GPU run.

Counted apart (``host_data``): tensors made from Python data (``torch.tensor(...)``,
``torch.as_tensor(list, ...)``: ``aten.lift_fresh``). Made with ``device=`` a GPU, each is a
blocking host-to-device copy, which also waits for the device's queue (pytorch/pytorch#120996);
on a CPU run the copy does not show, so these are the candidates, not certain syncs. The
scalar that Python's ``x[i] = 0`` wraps into a tensor is not counted. Invisible on a CPU run:
device-to-host copies (``.cpu()``, ``.tolist()``, ``.numpy()``).
"""

from __future__ import annotations

import traceback
from collections import Counter

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

DATA_DEPENDENT_SIZE = {
    "aten.nonzero.default", "aten.masked_select.default", "aten._unique.default",
    "aten._unique2.default", "aten.unique_dim.default", "aten.unique_consecutive.default",
    "aten.unique_dim_consecutive.default", "aten.bincount.default", "torchvision.nms.default",
}
REPEAT_INTERLEAVE = "aten.repeat_interleave.Tensor"  # a sync unless output_size is given
MASK_READS = {"aten.index.Tensor"}
MASK_WRITES = {"aten.index_put.default", "aten.index_put_.default", "aten._index_put_impl_.default"}
SCALAR_READS = {"aten._local_scalar_dense.default", "aten.equal.default"}
HOST_DATA = "aten.lift_fresh.default"
COPY = "aten.copy_.default"
OWN_CODE = ("/klrpn/", "/torchvision/")


def is_mask(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8)


def sync_kind(name: str, args, kwargs) -> str | None:
    """Why the operation ``name`` would make a GPU run's host wait: ``"size"``, ``"mask read"``,
    ``"mask write"`` or ``"scalar read"``; None if it would not."""
    if name in DATA_DEPENDENT_SIZE:
        return "size"
    if name == REPEAT_INTERLEAVE:
        return "size" if kwargs.get("output_size") is None and len(args) < 3 else None
    if name in MASK_READS:
        return "mask read" if any(is_mask(t) for t in args[1]) else None
    if name in MASK_WRITES:
        masked = any(is_mask(t) for t in args[1])
        accumulate = bool(args[3]) if len(args) > 3 else bool(kwargs.get("accumulate", False))
        one_value = args[2].numel() == 1 and not accumulate  # -> masked_fill_, no sync
        return "mask write" if masked and not one_value else None
    if name in SCALAR_READS:
        in_optimiser = any("/torch/optim/" in f.filename for f in traceback.extract_stack())
        return None if in_optimiser else "scalar read"
    return None


class HostWork(TorchDispatchMode):
    """``with HostWork() as work:`` counts the block's dispatched operations (``ops``; those that
    are not views: ``non_views``), its sync points by call site (``syncs``), by operation
    (``sync_ops``) and by kind (``sync_kinds``), and tensors made from Python data by call site
    (``host_data``)."""

    def __init__(self):
        super().__init__()
        self.ops = self.non_views = 0
        self.syncs: Counter = Counter()
        self.sync_ops: Counter = Counter()
        self.sync_kinds: Counter = Counter()
        self.host_data: Counter = Counter()
        self._fresh: dict = {}  # id -> (site, tensor): lift_fresh outputs not used yet

    @property
    def total_syncs(self) -> int:
        return sum(self.syncs.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func)
        self.ops += 1
        self.non_views += not (func.is_view or func.overloadpacket.__name__ == "_unsafe_view")
        kind = sync_kind(name, args, kwargs)
        if kind is not None:
            site = call_site()
            self.syncs[site] += 1
            self.sync_ops[name.removeprefix("aten.").removesuffix(".default")] += 1
            self.sync_kinds[kind] += 1
        if self._fresh:
            self._resolve_fresh(name, args)
        out = func(*args, **kwargs)
        if name == HOST_DATA:
            self._fresh[id(out)] = (call_site(), out)
        return out

    def _resolve_fresh(self, name: str, args) -> None:
        """A tensor made from Python data counts at its first use, unless that use is as the
        source of a write (``x[i] = 0``, ``x[mask] = 0``: Python's scalar, not a device copy)."""
        for i, arg in enumerate(pytree.tree_leaves(args)):
            entry = self._fresh.pop(id(arg), None) if isinstance(arg, torch.Tensor) else None
            if entry is not None and entry[1] is arg:
                written = (name in MASK_WRITES and arg is args[2]) or (name == COPY and i == 1)
                if not written:
                    self.host_data[entry[0]] += 1

    def __exit__(self, *exc):
        for site, _ in self._fresh.values():
            self.host_data[site] += 1
        self._fresh = {}
        return super().__exit__(*exc)


def call_site() -> str:
    """``file:line`` of the innermost frame in klrpn or torchvision (the autograd engine's for
    operations of the backward pass)."""
    frames = [f for f in traceback.extract_stack()
              if any(k in f.filename for k in OWN_CODE) and f.filename != __file__]
    if not frames:
        return "backward pass"
    f = frames[-1]
    name = f.filename.replace("\\", "/")
    name = name[name.rfind("/klrpn/") + 1:] if "/klrpn/" in name else name[name.rfind("/torchvision/") + 1:]
    return f"{name}:{f.lineno}"
