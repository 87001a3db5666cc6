"""How much cheaper the smoke profile's models are than the paper's (issue 2's budget: >= 20x).

Times one training step (forward, backward, SGD update) on 2 images at 128 px for a cell's
paper model (full width) and its smoke model, alternating the two in one run, and reports the
median step times and their ratio. CPU, one thread by default.

    .venv/bin/python benchmarks/bench_smoke_cost.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from common import tame_untrained_resnet
from klrpn.config import load_cell
from klrpn.metrics.model_stats import device_name
from klrpn.models import build_model


def batch(num_classes: int, size=(128, 160)):
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, *size, generator=g) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 70.0, 80.0], [60.0, 40.0, 150.0, 120.0]]),
                "labels": torch.tensor([1, num_classes])} for _ in range(2)]
    return images, targets


def step_fn(cell: str, profile: str):
    cfg = load_cell(cell, profile)
    cfg["input"]["min_size"], cfg["input"]["max_size"] = [128], 192  # same input for both
    model = tame_untrained_resnet(build_model(cfg, load_pretrained=False)).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    images, targets = batch(cfg["dataset"]["num_classes"])

    def step() -> float:
        start = time.perf_counter()
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cells", nargs="+",
                    default=["coco-faster_rcnn-vgg16-klrpn", "coco-faster_rcnn-resnet101-klrpn"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"device: {device_name('cpu')}; torch {torch.__version__}; 2 images at 128 px per step")
    print("| cell | paper step (s) | smoke step (s) | paper / smoke |")
    print("|---|---|---|---|")
    for cell in args.cells:
        steps = {p: step_fn(cell, p) for p in ("paper", "smoke")}
        for s in steps.values():
            s()  # warm-up
        times = {p: [] for p in steps}
        for _ in range(args.rounds):
            for p, s in steps.items():
                times[p].append(s())
        med = {p: statistics.median(t) for p, t in times.items()}
        print(f"| {cell} | {med['paper']:.2f} | {med['smoke']:.3f} | {med['paper'] / med['smoke']:.0f}x |",
              flush=True)


if __name__ == "__main__":
    main()
