"""Training throughput of one cell: images/s, step time, peak memory, GPU utilisation.

Times exactly the training loop's step (``klrpn.train.forward_losses`` + ``apply_update``) on a
cell's real model and optimiser, with overrides for image size, batch, width and AMP. Data:
``random`` (in-memory images of the chosen size with 1-8 random boxes: no disk, no decoding)
or ``dataset`` (the cell's training set through ``build_train_loader``, e.g. the synthetic
data of the smoke profile). ImageNet weights are never loaded (speed does not depend on them);
untrained ResNets get ``common.tame_untrained_resnet`` so that their activations stay finite.

Examples:
    # the issue's GPU goal: VGG-16 Faster R-CNN, 600 px, batch 4, bf16 vs fp32, one H100
    python benchmarks/bench_train.py coco-faster_rcnn-vgg16-rpn --min-size 600 --batch-size 4 \
        --iters 50 --amp bf16 --device cuda
    python benchmarks/bench_train.py coco-faster_rcnn-vgg16-rpn --min-size 600 --batch-size 4 \
        --iters 50 --amp off --device cuda
    # CPU sanity run of the smoke profile
    python benchmarks/bench_train.py coco-faster_rcnn-vgg16-klrpn --profile smoke --iters 5 --warmup 2

Prints one JSON line of results (and appends it to ``--json FILE`` if given).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from klrpn import train  # noqa: E402
from common import tame_untrained_resnet  # noqa: E402
from klrpn.config import load_cell  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cell")
    p.add_argument("--profile", default="paper")
    p.add_argument("--params", default=None, help="params folder (default ./params)")
    p.add_argument("--min-size", type=int, default=None, help="override input.min_size (short side)")
    p.add_argument("--max-size", type=int, default=None, help="override input.max_size")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per step (default: the cell's global batch / its gpus)")
    p.add_argument("--width", type=float, default=None, help="override model.width")
    p.add_argument("--iters", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data", choices=["random", "dataset"], default="random")
    p.add_argument("--data-root", default=None,
                   help="override dataset.root, e.g. synthetic/coco to train a paper cell on "
                        "the synthetic data (with --num-classes 3)")
    p.add_argument("--num-classes", type=int, default=None, help="override dataset.num_classes")
    p.add_argument("--image-size", default="480x640", help="HxW of random images (before resizing)")
    p.add_argument("--cudnn-benchmark", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="append the result line to this file")
    return p.parse_args(argv)


def configure(args) -> dict:
    cfg = load_cell(args.cell, args.profile, args.params)
    cfg["model"]["pretrained"] = False
    if args.min_size is not None:
        cfg["input"]["min_size"] = [args.min_size]
        cfg["input"]["test_min_size"] = args.min_size
    if args.max_size is not None:
        cfg["input"]["max_size"] = args.max_size
    if args.width is not None:
        cfg["model"]["width"] = args.width
    if args.data_root is not None:
        cfg["dataset"]["root"] = args.data_root
    if args.num_classes is not None:
        cfg["dataset"]["num_classes"] = args.num_classes
    return cfg


def random_batches(cfg: dict, batch: int, size: str, seed: int):
    """Endless batches of random images ``size`` (HxW) with 1-8 random boxes each."""
    h, w = (int(v) for v in size.lower().split("x"))
    g = torch.Generator().manual_seed(seed)
    while True:
        images, targets = [], []
        for _ in range(batch):
            n = int(torch.randint(1, 9, (), generator=g))
            xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
            wh = (0.1 + torch.rand(n, 2, generator=g) * 0.3) * torch.tensor([w, h])
            boxes = torch.cat([xy, torch.minimum(xy + wh, torch.tensor([w - 1.0, h - 1.0]))], 1)
            labels = torch.randint(1, cfg["dataset"]["num_classes"] + 1, (n,), generator=g)
            images.append(torch.rand(3, h, w, generator=g))
            targets.append({"boxes": boxes, "labels": labels})
        yield images, targets


def dataset_batches(cfg: dict, batch: int, seed: int):
    from klrpn.data import build_dataset, build_train_loader

    dataset = build_dataset(cfg, "train", train=True)
    return iter(build_train_loader(dataset, batch_size=batch, seed=seed,
                                   aspect_grouping=cfg["train"]["aspect_grouping"],
                                   num_workers=cfg["train"]["num_workers"]))


class GpuSampler:
    """Mean GPU utilisation (%) over a window, sampled every 0.2 s (needs NVML via pynvml)."""

    def __init__(self, device: torch.device):
        self.device, self.samples, self.running = device, [], False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while self.running:
            try:
                self.samples.append(torch.cuda.utilization(self.device))
            except Exception:  # no pynvml / NVML: report null
                return
            time.sleep(0.2)

    def __enter__(self):
        if self.device.type == "cuda":
            self.running = True
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.running = False

    def mean(self):
        return round(statistics.fmean(self.samples), 1) if self.samples else None


def main(argv=None) -> int:
    from klrpn.metrics.model_stats import device_name
    from klrpn.models import build_model

    args = parse_args(argv)
    cfg = configure(args)
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:  # set_device and NVML need an index
        device = torch.device("cuda", torch.cuda.current_device())
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    t = cfg["train"]
    batch = args.batch_size or t["batch_size"] // max(1, t["gpus"])
    train.seed_everything(args.seed)
    model = tame_untrained_resnet(build_model(cfg, load_pretrained=False)).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = train.build_optimizer(model, t)
    amp = None if args.amp == "off" else (torch.bfloat16 if args.amp == "bf16" else torch.float16)
    if amp is not None and device.type != "cuda":
        raise SystemExit("--amp needs --device cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)
    params = [p for p in model.parameters() if p.requires_grad]
    batches = (random_batches(cfg, batch, args.image_size, args.seed) if args.data == "random"
               else dataset_batches(cfg, batch, args.seed))

    def step():
        images, targets = train.to_device(*next(batches), device)
        total, names, values = train.forward_losses(model, images, targets, amp)
        train.apply_update(total, optimizer, scaler, params, t["grad_clip_norm"])
        return values[-1]

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times, losses = [], []
    with GpuSampler(device) as util:
        start = time.perf_counter()
        for _ in range(args.iters):
            t0 = time.perf_counter()
            losses.append(step())          # .tolist() inside syncs the device
            times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
    result = {
        "cell": args.cell, "profile": args.profile, "device": device_name(device),
        "amp": args.amp, "batch": batch, "min_size": cfg["input"]["min_size"],
        "max_size": cfg["input"]["max_size"], "width": cfg["model"]["width"], "data": args.data,
        "image_size": args.image_size if args.data == "random" else "dataset",
        "iters": args.iters, "warmup": args.warmup,
        "images_per_s": round(batch * args.iters / elapsed, 2),
        "step_ms_median": round(1000 * statistics.median(times), 1),
        "peak_mem_GiB": (round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
                         if device.type == "cuda" else None),
        "gpu_util_pct": util.mean(),
        "loss_first_last": [round(losses[0], 4), round(losses[-1], 4)],
        "threads": torch.get_num_threads(), "cudnn_benchmark": args.cudnn_benchmark, "channels_last": args.channels_last,
        "torch": str(torch.__version__),
    }
    line = json.dumps(result)
    print(line)
    if args.json:
        with open(args.json, "a") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
