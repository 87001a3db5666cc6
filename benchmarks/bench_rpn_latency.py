"""KL-RPN vs RPN inference latency, both timed in the same run (issue 2's benchmark).

For each backbone, builds the COCO Faster R-CNN cells with the RPN and with KL-RPN (paper
profile: full width, top-1000 proposals) and times ``model([image])`` on one image at the
paper's test scale (short side 600), alternating the two models so that any drift in the
machine's load hits both alike. Reports the median ms/image of each and their ratio.

Untrained networks would keep different numbers of proposals after NMS (KL-RPN's scores start
almost tied), and the second stage's cost grows with them; so the proposal NMS threshold is set
to 1.0 for both, and each passes exactly 1000 proposals on. An untrained full-width ResNet-101
with frozen BN (identity statistics) overflows to NaN through its 33 blocks: see
``common.tame_untrained_resnet``.

    .venv/bin/python benchmarks/bench_rpn_latency.py --rounds 5 [--device cuda]
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


def time_once(model, image, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    model([image])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000.0


def untrained_model(cell: str):
    cfg = load_cell(cell, "paper")
    cfg["model"]["rpn"]["nms_thresh"] = 1.0
    return tame_untrained_resnet(build_model(cfg, load_pretrained=False).eval())


@torch.no_grad()
def compare(backbone: str, *, rounds: int, warmup: int, device: torch.device, size=(600, 800)) -> dict:
    torch.manual_seed(0)
    models = {p: untrained_model(f"coco-faster_rcnn-{backbone}-{p}").to(device) for p in ("rpn", "klrpn")}
    image = torch.rand(3, *size, device=device)
    for _ in range(warmup):
        for model in models.values():
            model([image])
    times = {p: [] for p in models}
    for _ in range(rounds):
        for p, model in models.items():
            times[p].append(time_once(model, image, device))
    med = {p: statistics.median(t) for p, t in times.items()}
    # the second stage's cost grows with the proposals that survive NMS: report them
    kept = {p: len(m.propose([image])[0]["boxes"]) for p, m in models.items()}
    return {"backbone": backbone, "rpn_ms": med["rpn"], "klrpn_ms": med["klrpn"],
            "ratio": med["klrpn"] / med["rpn"], "rounds": rounds,
            "rpn_proposals": kept["rpn"], "klrpn_proposals": kept["klrpn"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backbones", nargs="+", default=["vgg16", "resnet101"])
    args = ap.parse_args()
    device = torch.device(args.device)
    print(f"device: {device_name(device)}; torch {torch.__version__}; image 600x800; top-1000 proposals")
    print("| backbone | RPN ms/img | KL-RPN ms/img | KL-RPN / RPN | proposals RPN / KL-RPN |")
    print("|---|---|---|---|---|")
    for backbone in args.backbones:
        r = compare(backbone, rounds=args.rounds, warmup=args.warmup, device=device)
        print(f"| {backbone} | {r['rpn_ms']:.1f} | {r['klrpn_ms']:.1f} | {r['ratio']:.3f} "
              f"| {r['rpn_proposals']} / {r['klrpn_proposals']} |", flush=True)


if __name__ == "__main__":
    main()
