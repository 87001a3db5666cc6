"""Fixtures for the model tests."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode


class Dispatched(TorchDispatchMode):
    """The ATen operations run inside the block, in order (``names``), and how many of them
    read through a boolean mask (``mask_reads``: each one a host synchronisation on a GPU)."""

    def __init__(self):
        super().__init__()
        self.names, self.mask_reads = [], 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        if func.overloadpacket.__name__ in ("index", "index_put", "index_put_"):
            self.mask_reads += any(isinstance(t, torch.Tensor) and t.dtype == torch.bool
                                   for t in args[1])
        return func(*args, **(kwargs or {}))


@pytest.fixture
def dispatched():
    """``with dispatched() as ops:`` records the operations run in the block."""
    return Dispatched
