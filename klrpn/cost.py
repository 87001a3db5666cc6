"""What a run's checkpoints take on disk, from its model and optimiser.

A periodic checkpoint (:mod:`klrpn.checkpoint`) holds the model's state (parameters and
buffers), the optimiser's (SGD with momentum: one buffer per trainable parameter; Adam: two and a
step count) and one RNG state per process; ``model_final.pt`` holds the model's state. A finished
run keeps :data:`klrpn.checkpoint.KEEP_LAST` periodic checkpoints and the final model
(:func:`kept_bytes`, ``klrpn plan``); while it trains it holds one checkpoint more, the one being
written before the oldest is pruned (:func:`peak_bytes`, the pre-flight's disk check).

The model is built as training builds it (without reading ImageNet weights); the optimiser's
state is made by one step of :func:`klrpn.train.build_optimizer`'s optimiser on the meta device,
so it takes no memory and no arithmetic. Sizes count the tensors
(:func:`klrpn.checkpoint.payload_bytes`); ``torch.save`` adds a few kB.
"""

from __future__ import annotations

import functools
import json

import torch

from klrpn import checkpoint as ckpt

_NOT_SIZE = ("seed", "params_hash", "sources", "recipe", "overrides")   # no size depends on these


def checkpoint_sizes(cfg: dict, world_size: int = 1) -> tuple[int, int]:
    """``(bytes of one periodic checkpoint, bytes of model_final.pt)`` of a resolved cell
    configuration trained on ``world_size`` processes; each distinct configuration once."""
    key = json.dumps({k: v for k, v in cfg.items() if k not in _NOT_SIZE}, sort_keys=True,
                     default=str)
    return _checkpoint_sizes(key, int(world_size))


@functools.lru_cache(maxsize=64)
def _checkpoint_sizes(cfg_json: str, world_size: int) -> tuple[int, int]:
    from klrpn.models import build_model
    from klrpn.train import build_optimizer

    cfg = json.loads(cfg_json)
    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg, load_pretrained=False).to("meta")
    optimizer = build_optimizer(model, cfg["train"])
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    optimizer.step()
    state = model.state_dict()
    checkpoint = {"model": state, "optimizer": optimizer.state_dict(),
                  "rng": [ckpt.capture_rng()] * max(1, world_size)}
    return ckpt.payload_bytes(checkpoint), ckpt.payload_bytes(state)


def kept_bytes(cfg: dict, world_size: int = 1) -> int:
    """What a finished run keeps: ``KEEP_LAST`` periodic checkpoints and the final model."""
    periodic, final = checkpoint_sizes(cfg, world_size)
    return ckpt.KEEP_LAST * periodic + final


def peak_bytes(cfg: dict, world_size: int = 1) -> int:
    """The most a run holds while it trains: one periodic checkpoint more than :func:`kept_bytes`."""
    return kept_bytes(cfg, world_size) + checkpoint_sizes(cfg, world_size)[0]
