"""Training throughput of one cell: images/s, step time, peak memory, GPU utilisation.

Times exactly the training loop's step (``klrpn.train.forward_losses`` + ``apply_update``, the
losses read one step late through ``PendingLosses`` as the loop does) on a cell's real model and
optimiser, with overrides for image size, batch, width and AMP. Data: ``random`` (in-memory
images of the chosen size with 1-8 random boxes: no disk, no decoding) or ``dataset`` (the
cell's training set through ``build_train_loader``; ``--synthetic`` points a paper cell at the
``klrpn data synth`` output). ImageNet weights are never loaded (speed does not depend on them);
untrained ResNets get ``common.tame_untrained_resnet`` so that their activations stay finite.

``--compare`` runs the cell in several configurations, each in a fresh process (so none
inherits another's cuDNN autotuning or allocator cache), and prints the ratios after / before:
- ``before``: the training loop before issue 11: batches padded to a multiple of 32
  (torchvision's default), no cuDNN autotuning (the loop never enabled it), losses read on the
  host right after the forward pass (one device synchronisation per step), NCHW, and the
  model's host-side work as it was (``--legacy-ops``: torchvision's FrozenBatchNorm2d and the
  RPN losses' boolean-mask reads, see ``bench_host_ops.py``), batches in pageable memory
  (``--pageable``; the loader now pins them for a CUDA run);
- ``before-bench``: the same with cuDNN autotuning on, the configuration in which issue 11's
  starting figures were measured (``--cudnn-benchmark`` of this script then);
- ``after``: the cell's own settings (``input.pad_multiple``, ``train.cudnn_benchmark``,
  ``train.channels_last``) and the loop's late loss read;
- ``after+cl``: ``after`` in channels-last layout;
- ``after-nobench``: ``after`` with cuDNN autotuning off (for VGG-16, whose cell turns it on);
- ``baseline``: the package in ``--baseline-src DIR`` (another version's ``klrpn/`` and
  ``params/``, exported by ``benchmarks/baseline_src.sh REV DIR``) with its cell's settings,
  timed by this script: before/after across code versions.
``--variants`` picks which (default: ``before,before-bench,after``).
``--trace FILE`` profiles five more steps after the timed ones (torch.profiler, CPU and CUDA)
and writes the operations' table by self device time and by host time to FILE (with
``--compare``, FILE's name gets each variant's label: ``trace_after.txt``).
``--max-seconds`` ends the timed steps early (the whole-run average is over the steps done).

Examples:
    # issue 11's GPU goals: before/after on one H100, 600 px, bf16, synthetic data
    python benchmarks/bench_train.py coco-faster_rcnn-resnet101-klrpn --data dataset --synthetic \
        --amp bf16 --device cuda --warmup 3 --iters 400 --max-seconds 20 --compare
    # CPU sanity run of the smoke profile
    python benchmarks/bench_train.py coco-faster_rcnn-vgg16-klrpn --profile smoke --iters 5 --warmup 2

Prints one JSON line per run (and appends it to ``--json FILE`` if given).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

# the package measured: this checkout, or the tree given by --src (set before klrpn is imported)
_SRC = sys.argv[sys.argv.index("--src") + 1] if "--src" in sys.argv else str(Path(__file__).resolve().parents[1])
sys.path.insert(0, _SRC)

from klrpn import train  # noqa: E402
from common import tame_untrained_resnet, use_synthetic_data  # noqa: E402
from klrpn.config import load_cell  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cell")
    p.add_argument("--profile", default="paper")
    p.add_argument("--params", default=None, help="params folder (default ./params)")
    p.add_argument("--baseline-src", default=None, help="--compare: a tree with another version's "
                   "klrpn/ and params/ (benchmarks/baseline_src.sh), the 'baseline' variant")
    p.add_argument("--src", default=None, help=argparse.SUPPRESS)  # read before the imports
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
    p.add_argument("--synthetic", action="store_true",
                   help="train on the synthetic data of `klrpn data synth` (3 classes)")
    p.add_argument("--pad-multiple", type=int, default=None, help="override input.pad_multiple")
    p.add_argument("--cudnn-benchmark", choices=["on", "off"], default=None,
                   help="override train.cudnn_benchmark")
    p.add_argument("--channels-last", choices=["on", "off"], default=None,
                   help="override train.channels_last")
    p.add_argument("--eager-loss-read", action="store_true",
                   help="read the losses right after the forward pass (the loop before issue 11)")
    p.add_argument("--legacy-ops", action="store_true",
                   help="the model's host-side work before issue 11 (bench_host_ops.as_before)")
    p.add_argument("--pageable", action="store_true",
                   help="batches in pageable memory (the loader before issue 11; a CUDA run's "
                        "loader now pins them)")
    p.add_argument("--trace", default=None, help="profile 5 steps after the timed ones into FILE")
    p.add_argument("--max-seconds", type=float, default=None, help="stop timing after this long")
    p.add_argument("--compare", action="store_true", help="before vs after, one process each")
    p.add_argument("--variants", default="before,before-bench,after",
                   help="with --compare: which of before, before-bench, after, after+cl")
    p.add_argument("--label", default=None, help="a name for this run in the JSON line")
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
    if args.synthetic:
        use_synthetic_data(cfg, args.params)
    if args.pad_multiple is not None:
        cfg["input"]["pad_multiple"] = args.pad_multiple
    if args.cudnn_benchmark is not None:
        cfg["train"]["cudnn_benchmark"] = args.cudnn_benchmark == "on"
    if args.channels_last is not None:
        cfg["train"]["channels_last"] = args.channels_last == "on"
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


def dataset_batches(cfg: dict, batch: int, seed: int, pin_memory: bool = False):
    from klrpn.data import build_dataset, build_train_loader

    dataset = build_dataset(cfg, "train", train=True)
    return iter(build_train_loader(dataset, batch_size=batch, seed=seed,
                                   aspect_grouping=cfg["train"]["aspect_grouping"],
                                   num_workers=cfg["train"]["num_workers"], pin_memory=pin_memory))


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


VARIANTS = {
    "before": ["--pad-multiple", "32", "--cudnn-benchmark", "off", "--channels-last", "off",
               "--eager-loss-read", "--legacy-ops", "--pageable"],
    "before-bench": ["--pad-multiple", "32", "--cudnn-benchmark", "on", "--channels-last", "off",
                     "--eager-loss-read", "--legacy-ops", "--pageable"],
    "after": [],
    "after+cl": ["--channels-last", "on"],
    "after-nobench": ["--cudnn-benchmark", "off"],
    "baseline": [],  # the package in --baseline-src, its cell's own settings
}
BEFORE = ("before", "before-bench", "baseline")


def write_trace(path: Path, step, sync, device: torch.device, steps: int = 5) -> None:
    """torch.profiler over ``steps`` training steps: the 25 busiest operations by self device
    time (CUDA) and by host time, as two tables in ``path``."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync()
    averages = prof.key_averages()
    tables = []
    if device.type == "cuda":
        tables.append(f"# {steps} steps, by self device time\n"
                      + averages.table(sort_by="self_device_time_total", row_limit=25))
    tables.append(f"# {steps} steps, by host time\n"
                  + averages.table(sort_by="self_cpu_time_total", row_limit=25))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n\n".join(tables) + "\n")


def compare(argv: list[str], args) -> int:
    """Each variant in a fresh process; the JSON lines, then one line of ratios."""
    base, skip = [], False
    for a in argv:  # this run's arguments less --compare and --variants X
        if skip or a == "--compare" or a.startswith("--variants"):
            skip = a == "--variants"
            continue
        base.append(a)
    names = args.variants.split(",")
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown or not set(names) & set(BEFORE) or not set(names) - set(BEFORE):
        raise SystemExit(f"bench_train: --variants {args.variants!r}: pick at least one of "
                         f"{', '.join(BEFORE)} and one of after, after+cl, after-nobench")
    if "baseline" in names and not args.baseline_src:
        raise SystemExit("bench_train: the 'baseline' variant needs --baseline-src DIR "
                         "(benchmarks/baseline_src.sh)")
    rows = {}
    for name in names:
        cmd = [sys.executable, __file__, *base, *VARIANTS[name], "--label", name]
        env = None
        if name == "baseline":  # another version's klrpn/ and params/, this script's timing
            src = Path(args.baseline_src).resolve()
            cmd += ["--src", str(src)]
            env = {**os.environ, "KLRPN_PARAMS": str(src / "params")}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if done.returncode or not lines:
            print(done.stdout + done.stderr, file=sys.stderr)
            raise SystemExit(f"bench_train: the {name!r} run failed (exit {done.returncode})")
        rows[name] = json.loads(lines[-1])
        print(lines[-1], flush=True)
    ratio = {"cell": args.cell, "compare": "images/s after / before; median step after / before"}
    for name in [n for n in names if n not in BEFORE]:
        for before in [n for n in names if n in BEFORE]:
            ratio[f"{name}/{before}"] = [
                round(rows[name]["images_per_s"] / rows[before]["images_per_s"], 2),
                round(rows[name]["step_ms_median"] / rows[before]["step_ms_median"], 2)]
    print(json.dumps(ratio))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(ratio) + "\n")
    return 0


def main(argv=None) -> int:
    from klrpn.metrics.model_stats import device_name
    from klrpn.models import build_model

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.compare:
        return compare(argv, args)
    cfg = configure(args)
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:  # set_device and NVML need an index
        device = torch.device("cuda", torch.cuda.current_device())
    t = cfg["train"]
    torch.backends.cudnn.benchmark = bool(t["cudnn_benchmark"]) and device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    batch = args.batch_size or t["batch_size"] // max(1, t["gpus"])
    train.seed_everything(args.seed)
    model = tame_untrained_resnet(build_model(cfg, load_pretrained=False)).to(device)
    if args.legacy_ops:
        from bench_host_ops import as_before

        as_before(model)
    channels_last = bool(t["channels_last"]) and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = train.build_optimizer(model, t)
    amp = None if args.amp == "off" else (torch.bfloat16 if args.amp == "bf16" else torch.float16)
    if amp is not None and device.type != "cuda":
        raise SystemExit("--amp needs --device cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)
    params = [p for p in model.parameters() if p.requires_grad]
    pinned = args.data == "dataset" and device.type == "cuda" and not args.pageable
    batches = (random_batches(cfg, batch, args.image_size, args.seed) if args.data == "random"
               else dataset_batches(cfg, batch, args.seed, pin_memory=pinned))
    losses, pending = [], None

    def step():
        nonlocal pending
        images, targets = train.to_device(*next(batches), device)
        total, names, values = train.forward_losses(model, images, targets, amp)
        if args.eager_loss_read:
            losses.append(values.tolist()[-1])  # waits for the forward pass
        train.apply_update(total, optimizer, scaler, params, t["grad_clip_norm"])
        if not args.eager_loss_read:
            if pending is not None:
                losses.append(pending.read()[-1])
            pending = train.PendingLosses(values)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        step()
    if pending is not None:
        pending.read()
        pending = None
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    losses.clear()
    times = []
    with GpuSampler(device) as util:
        start = time.perf_counter()
        for _ in range(args.iters):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)   # start to start: the loop's step rate
            if args.max_seconds and time.perf_counter() - start > args.max_seconds:
                break
        sync()
        elapsed = time.perf_counter() - start
    if pending is not None:
        losses.append(pending.read()[-1])
        pending = None
    result = {
        "label": args.label, "cell": args.cell, "profile": args.profile,
        "device": device_name(device), "amp": args.amp, "batch": batch,
        "min_size": cfg["input"]["min_size"], "max_size": cfg["input"]["max_size"],
        "pad_multiple": cfg["input"]["pad_multiple"], "width": cfg["model"]["width"],
        "data": args.data, "synthetic": args.synthetic,
        "image_size": args.image_size if args.data == "random" else "dataset",
        "iters": len(times), "warmup": args.warmup,
        "images_per_s": round(batch * len(times) / elapsed, 2),
        "step_ms_median": round(1000 * statistics.median(times), 1),
        "peak_mem_GiB": (round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
                         if device.type == "cuda" else None),
        "gpu_util_pct": util.mean(),
        "loss_first_last": [round(losses[0], 4), round(losses[-1], 4)],
        "threads": torch.get_num_threads(), "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "channels_last": channels_last, "eager_loss_read": args.eager_loss_read,
        "legacy_ops": args.legacy_ops, "pinned_batches": pinned,
        "torch": str(torch.__version__),
    }
    if args.trace:  # after the result: its steps count in neither the timings nor the losses
        trace = Path(args.trace)
        if args.label:  # one file per --compare variant
            trace = trace.with_name(f"{trace.stem}_{args.label}{trace.suffix}")
        write_trace(trace, step, sync, device)
        result["trace"] = str(trace)
    line = json.dumps(result)
    print(line)
    if args.json:
        with open(args.json, "a") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
