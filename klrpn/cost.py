"""What a run costs in disk: the size of a cell's checkpoints, from its model and optimiser.

A periodic checkpoint (:mod:`klrpn.checkpoint`) holds the model's state (parameters and
buffers) and the optimiser's (SGD with momentum: one buffer per trainable parameter; Adam: two);
``model_final.pt`` holds the model's state. While a run trains, its folder holds at most
:data:`klrpn.checkpoint.KEEP_LAST` periodic checkpoints, one more while the next is written and
before the oldest is pruned, and at the end the final model. The model is built without its
pretrained weights (no file is read); each distinct model configuration once.
"""

from __future__ import annotations

import functools
import json

from klrpn.checkpoint import KEEP_LAST

STATE_PER_PARAMETER = {"sgd": 1, "adam": 2}   # optimiser buffers per trainable parameter


def model_state_bytes(cfg: dict) -> tuple[int, int]:
    """(bytes of the model's state dict, bytes of its trainable parameters) of a resolved cell
    configuration."""
    return _model_state_bytes(json.dumps({k: cfg[k] for k in ("model", "dataset", "input")},
                                         sort_keys=True))


@functools.lru_cache(maxsize=None)
def _model_state_bytes(key: str) -> tuple[int, int]:
    from klrpn.models import build_model

    cfg = json.loads(key)

    model = build_model(cfg, load_pretrained=False)
    state = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return state, trainable


def checkpoint_bytes(cfg: dict) -> int:
    """About the size of one periodic checkpoint of the cell (model and optimiser state)."""
    state, trainable = model_state_bytes(cfg)
    t = cfg["train"]
    buffers = STATE_PER_PARAMETER[t["optimizer"]]
    if t["optimizer"] == "sgd" and not float(t.get("momentum", 0)):
        buffers = 0
    return state + buffers * trainable


def run_disk_bytes(cfg: dict) -> int:
    """The most disk a training run of the cell holds at once: ``KEEP_LAST + 1`` periodic
    checkpoints and the final model."""
    return (KEEP_LAST + 1) * checkpoint_bytes(cfg) + model_state_bytes(cfg)[0]
