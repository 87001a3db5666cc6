"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import torch
from torchvision.models.resnet import Bottleneck

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
