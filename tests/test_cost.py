"""klrpn.cost: a checkpoint's estimated size against one torch.save actually writes."""

from __future__ import annotations

import torch

from helpers import PARAMS

from klrpn.checkpoint import KEEP_LAST
from klrpn.config import load_cell
from klrpn.cost import checkpoint_bytes, model_state_bytes, run_disk_bytes
from klrpn.models import build_model
from klrpn.train import build_optimizer


def test_estimate_is_within_ten_percent_of_a_written_checkpoint(tmp_path):
    for cell in ("voc07-rfcn-resnet101-klrpn", "voc0712-faster_rcnn-resnet101-rpn"):  # adam, sgd
        cfg = load_cell(cell, "smoke", PARAMS)
        torch.manual_seed(0)
        model = build_model(cfg, load_pretrained=False)
        optimizer = build_optimizer(model, cfg["train"])
        loss = sum(p.sum() for p in model.parameters() if p.requires_grad)
        loss.backward()
        optimizer.step()              # creates the optimiser's state
        path = tmp_path / f"{cell}.pt"
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
        written = path.stat().st_size
        assert 0.9 * written < checkpoint_bytes(cfg) <= written, (cell, written)
        state, _ = model_state_bytes(cfg)
        assert run_disk_bytes(cfg) == (KEEP_LAST + 1) * checkpoint_bytes(cfg) + state
