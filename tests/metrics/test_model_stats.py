"""Parameter count and latency measurement."""

from __future__ import annotations

import torch
from torchvision.ops.misc import FrozenBatchNorm2d

from klrpn.metrics.model_stats import count_parameters, inference_latency


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)  # 4*3*3*3 + 4 = 112
        self.bn = FrozenBatchNorm2d(4)  # weight + bias = 8 (buffers)
        self.head = torch.nn.Linear(4, 2)  # 10
        self.conv.weight.requires_grad_(False)  # frozen parameters still count

    def forward(self, images):
        return [self.head(self.bn(self.conv(i[None])).mean((2, 3))) for i in images]


def test_count_parameters_includes_frozen():
    assert count_parameters(Tiny()) == 112 + 8 + 10


def test_inference_latency_reports_median_and_device():
    images = [torch.rand(3, 16, 20), torch.rand(3, 12, 12)]
    out = inference_latency(Tiny(), images, warmup=1, iters=3, device="cpu")
    assert out["images_timed"] == 6
    assert out["ms_per_image"] > 0
    assert out["device"].startswith("cpu: ")
