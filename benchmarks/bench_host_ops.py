"""Host-side work of one training step, counted on any device: operations dispatched and the
points where a GPU run's host would wait for the GPU, for this checkout's package and, with
``--baseline-src``, for another version of it (e.g. the code before the sync-free training
step), in one invocation.

On a GPU a training step costs the host one kernel launch (a few microseconds) per dispatched
operation, and every synchronisation point (a data-dependent size: ``nonzero``, a boolean-mask
read, NMS; a ``.item()``) drains the GPU's queue: the GPU idles while the host catches up. Both
are properties of the code, not of the device, so they are counted here on any device (the CPU
on a machine without a GPU) with ``klrpn.hostwork.HostWork``, a ``TorchDispatchMode``, around the
step's forward and backward passes (``klrpn.train.forward_losses`` and the backward of its
total; the optimiser update, foreach on a GPU, is left out), after one warm-up step (first-call
work: the folded BatchNorm's scale, cached anchors and constants). What counts as a sync point
is listed in ``klrpn/hostwork.py``: every operation whose output size depends on the data
(``nonzero``, boolean-mask reads and tensor writes, ``masked_select``, ``unique``,
``bincount``, ``repeat_interleave``, NMS) and every scalar read (``.item()``,
``_local_scalar_dense``, ``torch.equal``) except on the optimiser's CPU step counters.
Tensors made from Python data (``torch.tensor``, ``torch.as_tensor`` of a list), a
host-to-device copy in a GPU run, are counted apart (``host_data``).

    PYTHONPATH=benchmarks .venv/bin/python benchmarks/bench_host_ops.py --profile paper \
        --synthetic --width 0.25 [--cells C ...] [--steps 2] [--sites 8] \
        [--baseline-src DIR] [--batch-size N]

``--baseline-src DIR`` counts the same cells, seed and batches with the package in ``DIR``
(``bash benchmarks/baseline_src.sh REV DIR`` exports ``klrpn/`` and ``params/`` of a git
revision there), each in its own process. ``--batch-size`` overrides the per-GPU batch (the
counts of the sync-free step do not grow with it). Prints one JSON line per cell: per step,
operations (all, and those that are not views: views only relabel a tensor's memory and launch
nothing on a GPU), sync points and host data, the busiest sync sites, and with a baseline the
same for it and the ratios this / baseline.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.ops.misc import FrozenBatchNorm2d

# the package measured: this checkout, or the tree given by --src (set before klrpn is imported)
_SRC = sys.argv[sys.argv.index("--src") + 1] if "--src" in sys.argv else str(Path(__file__).resolve().parents[1])
sys.path.insert(0, _SRC)

from common import tame_untrained_resnet, use_synthetic_data  # noqa: E402
from klrpn import train  # noqa: E402
from klrpn.config import load_cell  # noqa: E402
from klrpn.hostwork import HostWork  # noqa: E402
from klrpn.models import build_model  # noqa: E402
from klrpn.models.backbones import FoldedFrozenBatchNorm2d  # noqa: E402
from klrpn.models.rpn import KLRPN, BaselineRPN  # noqa: E402

DEFAULT_CELLS = ["coco-faster_rcnn-resnet101-klrpn", "coco-faster_rcnn-vgg16-rpn",
                 "coco-rfcn-resnet101-klrpn", "voc07-rfcn-resnet101-rpn"]


# --- the host-side code as it was before issue 11 (bench_train.py --legacy-ops) ---------------
def legacy_baseline_rpn_loss(self, pred, gt_deltas, pos, neg):
    logits = pred["logits"].reshape(-1, 2)
    deltas = pred["deltas"].reshape(-1, 4)
    sampled = pos | neg
    loss_cls = F.cross_entropy(logits[sampled], pos[sampled].long())
    loss_reg = F.smooth_l1_loss(deltas[pos], gt_deltas[pos], beta=self.smooth_l1_beta,
                                reduction="sum") / sampled.sum().clamp(min=1)
    return {"loss_rpn_cls": loss_cls, "loss_rpn_reg": loss_reg}


def legacy_klrpn_loss(self, pred, gt_deltas, pos, neg):
    from klrpn.losses import kl_neg_loss, kl_pos_loss

    with torch.autocast(device_type=gt_deltas.device.type, enabled=False):
        mu = pred["deltas"].reshape(-1, 4).float()
        log_var = pred["log_var"].reshape(-1, 4).float()
        gt_deltas = gt_deltas.float()
        loss = (kl_pos_loss(mu[pos], log_var[pos], gt_deltas[pos], self.gamma).sum()
                + kl_neg_loss(mu[neg], log_var[neg], self.gamma, self.neg_var).sum())
        return {"loss_kl": loss / (pos | neg).sum().clamp(min=1)}


def as_before(model: torch.nn.Module) -> torch.nn.Module:
    for module in model.modules():
        if isinstance(module, FoldedFrozenBatchNorm2d):
            module.__class__ = FrozenBatchNorm2d
        elif isinstance(module, KLRPN):
            module.compute_loss = legacy_klrpn_loss.__get__(module)
        elif isinstance(module, BaselineRPN):
            module.compute_loss = legacy_baseline_rpn_loss.__get__(module)
    return model
# ----------------------------------------------------------------------------------------------


def batches(cfg: dict, n: int, seed: int, batch_size: int | None = None) -> list:
    from klrpn.data import build_dataset, build_train_loader

    dataset = build_dataset(cfg, "train", train=True)
    per_gpu = batch_size or cfg["train"]["batch_size"] // max(1, cfg["train"]["gpus"])
    loader = iter(build_train_loader(dataset, batch_size=per_gpu, seed=seed,
                                     aspect_grouping=cfg["train"]["aspect_grouping"], num_workers=0))
    return [next(loader) for _ in range(n)]


def count(model, data: list) -> HostWork:
    """Forward + backward of each batch under the counter."""
    work = HostWork()
    for images, targets in data:
        images, targets = train.to_device(copy.deepcopy(images), copy.deepcopy(targets),
                                          torch.device("cpu"))
        model.zero_grad(set_to_none=True)
        with work:
            total, _, _ = train.forward_losses(model, images, targets, None)
            total.backward()
    return work


def count_cell(cell: str, args) -> dict:
    """This process's package: the counts per step of one cell."""
    cfg = load_cell(cell, args.profile)
    cfg["model"]["pretrained"] = False
    if args.width is not None:
        cfg["model"]["width"] = args.width
    if args.synthetic:
        use_synthetic_data(cfg)
    data = batches(cfg, args.steps + 1, args.seed, args.batch_size)
    torch.manual_seed(args.seed)
    model = tame_untrained_resnet(build_model(cfg, load_pretrained=False)).train()
    count(model, data[:1])  # warm-up: first-call work
    work = count(model, data[1:])
    per = lambda v: round(v / args.steps, 1)  # noqa: E731
    return {"ops": per(work.ops), "non_view_ops": per(work.non_views),
            "syncs": per(work.total_syncs), "host_data": per(sum(work.host_data.values())),
            "sync_sites": {k: per(v) for k, v in work.syncs.most_common(args.sites)},
            "host_data_sites": {k: per(v) for k, v in work.host_data.most_common(args.sites)},
            "images_per_step": len(data[0][0]), "width": cfg["model"]["width"]}


def count_baseline(cell: str, args) -> dict:
    """The same counts with the package in ``--baseline-src``, in a fresh process."""
    cmd = [sys.executable, __file__, "--src", str(Path(args.baseline_src).resolve()), "--only-counts",
           "--cells", cell, "--profile", args.profile, "--steps", str(args.steps),
           "--sites", str(args.sites), "--seed", str(args.seed)]
    cmd += ["--width", str(args.width)] if args.width is not None else []
    cmd += ["--batch-size", str(args.batch_size)] if args.batch_size else []
    cmd += ["--synthetic"] if args.synthetic else []
    env = {**os.environ, "KLRPN_PARAMS": str(Path(args.baseline_src).resolve() / "params"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent),
                                          os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"bench_host_ops: the baseline in {args.baseline_src} failed on {cell}:\n"
                         f"{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_cell(cell: str, args) -> dict:
    ours = count_cell(cell, args)
    row = {"cell": cell, "profile": args.profile, "steps": args.steps, **ours}
    if args.baseline_src:
        base = count_baseline(cell, args)
        row["baseline"] = {"src": str(args.baseline_src), **base}
        for key in ("ops", "non_view_ops", "syncs"):
            row[f"{key}_ratio"] = round(ours[key] / base[key], 3) if base[key] else None
    return row


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", nargs="+", default=DEFAULT_CELLS)
    p.add_argument("--profile", default="paper")
    p.add_argument("--width", type=float, default=None, help="override model.width (counts do "
                   "not depend on it; a narrow model just runs faster on a CPU)")
    p.add_argument("--synthetic", action="store_true", help="use the klrpn data synth output")
    p.add_argument("--steps", type=int, default=2, help="counted steps (after one warm-up step)")
    p.add_argument("--sites", type=int, default=8, help="sync and host-data sites listed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=None, help="images per step (default: the "
                   "cell's per-GPU batch)")
    p.add_argument("--baseline-src", default=None, help="a tree with another version's klrpn/ "
                   "and params/ (benchmarks/baseline_src.sh): counted too, in its own process")
    p.add_argument("--src", default=None, help=argparse.SUPPRESS)  # read before the imports
    p.add_argument("--only-counts", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    for cell in args.cells:
        row = count_cell(cell, args) if args.only_counts else bench_cell(cell, args)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
