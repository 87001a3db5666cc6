"""One process per GPU through ``torchrun``; the helpers the loop needs and nothing more.

``klrpn train`` started by hand for a cell with ``train.gpus > 1`` claims its GPUs
(:mod:`klrpn.gpu`) and re-launches itself under ``python -m torch.distributed.run
--standalone --nproc_per_node N`` with ``CUDA_VISIBLE_DEVICES`` set to the claimed devices;
each worker then sees ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` and joins the process group.
Started under ``torchrun`` directly, the job uses the devices it was given as they are.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def world_from_env() -> World:
    if not under_torchrun():
        return World()
    return World(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]),
                 int(os.environ["WORLD_SIZE"]))


def init(world: World, device: torch.device) -> None:
    """Join the process group (NCCL on CUDA, gloo on CPU) when there is more than one process."""
    if world.size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, **kwargs)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def no_per_step_buffer_sync() -> dict:
    """``DistributedDataParallel`` keyword arguments that sync the model's buffers once, when
    it wraps the model, and not again before every forward pass (DDP's default). The
    detectors' only buffers are frozen BatchNorm statistics, which never change: the per-step
    broadcast would be a collective per step for nothing, and it writes into the buffers behind
    their version counters, which ``FoldedFrozenBatchNorm2d`` relies on. ``forward_sync_buffers``
    replaces ``broadcast_buffers`` in newer torch releases."""
    ddp_args = inspect.signature(torch.nn.parallel.DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers" if "forward_sync_buffers" in ddp_args else "broadcast_buffers": False}


def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """Average a tensor over the processes (identity for one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= dist.get_world_size()
    return x


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on any process (so every process stops at the same step)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        t = torch.tensor([int(flag)], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())
    return flag


def gather_objects(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` for one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        out = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
