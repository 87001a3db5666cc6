"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from torchvision.models.resnet import Bottleneck

PARAMS = Path(__file__).resolve().parents[1] / "params"

# Residual-branch scale for untrained ResNets (see tame_untrained_resnet).
UNTRAINED_RESIDUAL_SCALE = 0.2


@torch.no_grad()
def tame_untrained_resnet(model: torch.nn.Module) -> torch.nn.Module:
    """Keep an untrained full-width ResNet-101's activations finite.

    With frozen BatchNorm at identity statistics and no ImageNet weights, the 33 bottlenecks
    multiply the activations until they overflow to NaN, and NaN boxes change what NMS and the
    second stage do (and so the timings). Scaling each bottleneck's last frozen-BN weight to 0.2
    keeps them finite, as trained weights do. No-op for VGG."""
    for module in model.modules():
        if isinstance(module, Bottleneck):
            module.bn3.weight.fill_(UNTRAINED_RESIDUAL_SCALE)
    return model


def use_synthetic_data(cfg: dict, params_dir: Path | str | None = None) -> dict:
    """Point a (paper) cell at the synthetic dataset of ``klrpn data synth``: the smoke
    profile's ``by_format.<format>.dataset`` section (root, classes, number of classes)."""
    profile = Path(params_dir or PARAMS) / "profiles" / "smoke.yaml"
    section = yaml.safe_load(profile.read_text())["by_format"][cfg["dataset"]["format"]]["dataset"]
    cfg["dataset"].update(section)
    return cfg
