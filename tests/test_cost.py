"""klrpn.cost: a checkpoint's estimated size against what torch.save writes for a real one."""

from __future__ import annotations

import torch

from helpers import PARAMS

from klrpn import checkpoint as ckpt
from klrpn.config import load_cell
from klrpn.cost import checkpoint_sizes, kept_bytes, peak_bytes
from klrpn.models import build_model
from klrpn.train import build_optimizer


def test_estimates_match_a_written_checkpoint_and_final_model(tmp_path):
    for cell in ("voc07-rfcn-resnet101-klrpn", "voc0712-faster_rcnn-resnet101-rpn"):  # adam, sgd
        cfg = load_cell(cell, "smoke", PARAMS)
        torch.manual_seed(0)
        model = build_model(cfg, load_pretrained=False)
        optimizer = build_optimizer(model, cfg["train"])
        sum(p.sum() for p in model.parameters() if p.requires_grad).backward()
        optimizer.step()              # creates the optimiser's state
        ckpt.atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "rng": [ckpt.capture_rng()]}, tmp_path / "c.pt")
        torch.save(model.state_dict(), tmp_path / "f.pt")
        periodic, final = checkpoint_sizes(cfg)
        for estimate, path in ((periodic, "c.pt"), (final, "f.pt")):
            written = (tmp_path / path).stat().st_size
            assert 0.9 * written < estimate <= written, (cell, path, estimate, written)
        assert kept_bytes(cfg) == ckpt.KEEP_LAST * periodic + final
        assert peak_bytes(cfg) == kept_bytes(cfg) + periodic
