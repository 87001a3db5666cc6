"""Model size and speed: parameter count and median inference time per image."""

from __future__ import annotations

import platform
import statistics
import time

import torch
from torchvision.ops.misc import FrozenBatchNorm2d


def count_parameters(model: torch.nn.Module) -> int:
    """All parameters, trainable and frozen, plus the affine weight/bias of frozen batch norms
    (torchvision's ``FrozenBatchNorm2d`` and its subclasses keep them as buffers; the paper's
    code had them as parameters). Running statistics are not counted."""
    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            total += module.weight.numel() + module.bias.numel()
    return int(total)


def device_name(device) -> str:
    """Human-readable name of ``device``: the GPU's model, or the CPU's with its thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"cpu: {cpu}, {torch.get_num_threads()} threads"


@torch.no_grad()
def inference_latency(model: torch.nn.Module, images: list[torch.Tensor], *, warmup: int = 3,
                      iters: int = 10, device="cpu") -> dict:
    """Median milliseconds per image of ``model([image])`` in eval mode, images [3, H, W] one at
    a time, after ``warmup`` untimed passes over the first image; ``iters`` passes over
    ``images``. Returns ``{"ms_per_image", "device", "images_timed"}``."""
    device = torch.device(device)
    model = model.eval().to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)
    for _ in range(warmup):
        model([images[0].to(device)])
    sync(device)
    times = []
    for _ in range(iters):
        for image in images:
            image = image.to(device)
            sync(device)
            start = time.perf_counter()
            model([image])
            sync(device)
            times.append((time.perf_counter() - start) * 1000.0)
    return {"ms_per_image": statistics.median(times), "device": device_name(device),
            "images_timed": len(times)}
