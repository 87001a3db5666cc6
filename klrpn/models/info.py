"""What ``klrpn model-info`` reports about a cell's model."""

from __future__ import annotations

from klrpn.config import load_cell
from klrpn.metrics.model_stats import count_parameters
from klrpn.models import build_model


def model_info(cell_id: str, *, profile: str = "paper", params_dir=None) -> dict:
    """Parameter counts (exact; frozen BatchNorm affine terms count as frozen parameters, as in
    the paper's baseline where they are nn.Parameters with requires_grad=False) and structure."""
    cfg = load_cell(cell_id, profile, params_dir)
    model = build_model(cfg, load_pretrained=False)
    params = count_parameters(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    m = cfg["model"]
    return {
        "cell": cell_id,
        "profile": profile,
        "params": params,
        "params_M": round(params / 1e6, 2),
        "trainable": trainable,
        "frozen": params - trainable,
        "detector": m["detector"],
        "backbone": m["backbone"],
        "proposal": m["proposal"],
        "width": m["width"],
        "anchors_per_location": len(m["anchor_scales"]) * len(m["anchor_ratios"]),
        "num_classes": cfg["dataset"]["num_classes"],
        "params_hash": cfg["params_hash"],
    }
