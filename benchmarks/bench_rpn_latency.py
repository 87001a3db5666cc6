"""KL-RPN vs RPN inference latency, both timed in the same run (issue 2's benchmark).

For each backbone, builds the COCO Faster R-CNN cells with the RPN and with KL-RPN (paper
profile: full width, top-1000 proposals) and times ``model([image])`` on one image at the
paper's test scale (short side 600), alternating the two models so that any drift in the
machine's load hits both alike. Reports the median ms/image of each and their ratio.

    .venv/bin/python benchmarks/bench_rpn_latency.py --rounds 5 [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from klrpn.config import load_cell
from klrpn.metrics.model_stats import device_name
from klrpn.models import build_model


def time_once(model, image, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    model([image])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000.0


@torch.no_grad()
def compare(backbone: str, *, rounds: int, warmup: int, device: torch.device, size=(600, 800)) -> dict:
    torch.manual_seed(0)
    models = {p: build_model(load_cell(f"coco-faster_rcnn-{backbone}-{p}", "paper"),
                             load_pretrained=False).eval().to(device) for p in ("rpn", "klrpn")}
    image = torch.rand(3, *size, device=device)
    for _ in range(warmup):
        for model in models.values():
            model([image])
    times = {p: [] for p in models}
    for _ in range(rounds):
        for p, model in models.items():
            times[p].append(time_once(model, image, device))
    med = {p: statistics.median(t) for p, t in times.items()}
    return {"backbone": backbone, "rpn_ms": med["rpn"], "klrpn_ms": med["klrpn"],
            "ratio": med["klrpn"] / med["rpn"], "rounds": rounds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backbones", nargs="+", default=["vgg16", "resnet101"])
    args = ap.parse_args()
    device = torch.device(args.device)
    print(f"device: {device_name(device)}; torch {torch.__version__}; image 600x800; top-1000 proposals")
    print("| backbone | RPN ms/img | KL-RPN ms/img | KL-RPN / RPN |")
    print("|---|---|---|---|")
    for backbone in args.backbones:
        r = compare(backbone, rounds=args.rounds, warmup=args.warmup, device=device)
        print(f"| {backbone} | {r['rpn_ms']:.0f} | {r['klrpn_ms']:.0f} | {r['ratio']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
