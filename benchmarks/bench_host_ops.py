"""Host-side work of one training step: operations dispatched, and the points where a GPU run's
host would wait for the GPU, before vs after issue 11's host-side changes, in one invocation.

On a GPU a training step costs the host one kernel launch (a few microseconds) per dispatched
operation, and every synchronisation point (a data-dependent size: ``nonzero``, a boolean-mask
read, NMS; a ``.item()``) drains the GPU's queue: the GPU idles while the host catches up. Both
are properties of the code, not of the device, so they are counted here on any device (the CPU
on a machine without a GPU) with a ``TorchDispatchMode`` around the step's forward and backward
passes (``klrpn.train.forward_losses`` and the backward of its total; the optimiser update,
foreach on a GPU, is left out).

Variants, each on a fresh model of the same seed and the same batches:
- ``before``: torchvision's ``FrozenBatchNorm2d`` (scale and shift recomputed on every call)
  and the RPN losses reading the sampled anchors through boolean masks, as before issue 11;
- ``after``: the package as it is (``FoldedFrozenBatchNorm2d``, index gathers).
Both must give the same losses and gradients bit for bit (checked, ``identical`` in the output).

Sync points counted: ``nonzero``; indexing with a boolean mask (and its backward's masked
write); ``masked_select``, ``unique``; NMS (its output size); ``.item()`` and the like
(``_local_scalar_dense``) except on the optimiser's step counters, which live on the CPU also in
a GPU run. A boolean-mask write of one value (``x[mask] = 0``) is not one: ATen turns it into
``masked_fill_``.

    PYTHONPATH=benchmarks .venv/bin/python benchmarks/bench_host_ops.py --profile paper \
        --synthetic --width 0.25 [--cells C ...] [--steps 2] [--sites 8]

Prints one JSON line per cell: per step, operations (all, and those that are not views: views
only relabel a tensor's memory and launch nothing on a GPU) and sync points before and after,
their ratios, and the busiest sync sites after.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import traceback
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torchvision.ops.misc import FrozenBatchNorm2d

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import tame_untrained_resnet, use_synthetic_data  # noqa: E402
from klrpn import train  # noqa: E402
from klrpn.config import load_cell  # noqa: E402
from klrpn.models import build_model  # noqa: E402
from klrpn.models.backbones import FoldedFrozenBatchNorm2d  # noqa: E402
from klrpn.models.rpn import KLRPN, BaselineRPN  # noqa: E402

DEFAULT_CELLS = ["coco-faster_rcnn-resnet101-klrpn", "coco-faster_rcnn-vgg16-rpn",
                 "coco-rfcn-resnet101-klrpn", "voc07-rfcn-resnet101-rpn"]
ALWAYS_SYNC = {"aten.nonzero.default", "aten.masked_select.default", "aten._unique2.default",
               "aten.unique_consecutive.default", "torchvision.nms.default"}
MASK_READS = {"aten.index.Tensor"}
MASK_WRITES = {"aten.index_put.default", "aten.index_put_.default", "aten._index_put_impl_.default"}
ITEM = "aten._local_scalar_dense.default"
OWN_CODE = ("/klrpn/", "/torchvision/")


def is_mask(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8)


class HostWork(TorchDispatchMode):
    """Counts dispatched operations and sync points, the latter by call site."""

    def __init__(self):
        super().__init__()
        self.ops = self.non_views = 0
        self.syncs: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        self.non_views += not (func.is_view or func.overloadpacket.__name__ == "_unsafe_view")
        if self.syncs_host(str(func), args):
            self.syncs[call_site()] += 1
        return func(*args, **(kwargs or {}))

    @staticmethod
    def syncs_host(name: str, args) -> bool:
        if name in ALWAYS_SYNC:
            return True
        if name in MASK_READS:
            return any(is_mask(t) for t in args[1])
        if name in MASK_WRITES:
            masked = any(is_mask(t) for t in args[1])
            one_value = args[2].numel() == 1 and not (len(args) > 3 and args[3])
            return masked and not one_value
        if name == ITEM:
            return not any("/torch/optim/" in f.filename for f in traceback.extract_stack())
        return False


def call_site() -> str:
    """``file:line`` of the innermost frame in klrpn or torchvision (the autograd engine's for
    operations of the backward pass)."""
    frames = [f for f in traceback.extract_stack() if any(k in f.filename for k in OWN_CODE)]
    if not frames:
        return "backward pass"
    f = frames[-1]
    name = f.filename.replace("\\", "/")
    name = name[name.rfind("/klrpn/") + 1:] if "/klrpn/" in name else name[name.rfind("/torchvision/") + 1:]
    return f"{name}:{f.lineno}"


# --- the code as it was before issue 11 ------------------------------------------------------
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


def batches(cfg: dict, n: int, seed: int) -> list:
    from klrpn.data import build_dataset, build_train_loader

    dataset = build_dataset(cfg, "train", train=True)
    per_gpu = cfg["train"]["batch_size"] // max(1, cfg["train"]["gpus"])
    loader = iter(build_train_loader(dataset, batch_size=per_gpu, seed=seed,
                                     aspect_grouping=cfg["train"]["aspect_grouping"], num_workers=0))
    return [next(loader) for _ in range(n)]


def count(model, data: list) -> tuple[HostWork, list, list]:
    """Forward + backward of each batch under the counter; the losses and gradients."""
    work, losses, grads = HostWork(), [], []
    for images, targets in data:
        images, targets = train.to_device(copy.deepcopy(images), copy.deepcopy(targets),
                                          torch.device("cpu"))
        model.zero_grad(set_to_none=True)
        with work:
            total, _, values = train.forward_losses(model, images, targets, None)
            total.backward()
        losses.append(values)
        grads.append([p.grad for p in model.parameters() if p.grad is not None])
    return work, losses, grads


def bench_cell(cell: str, args) -> dict:
    cfg = load_cell(cell, args.profile)
    cfg["model"]["pretrained"] = False
    if args.width is not None:
        cfg["model"]["width"] = args.width
    if args.synthetic:
        use_synthetic_data(cfg)
    data = batches(cfg, args.steps + 1, args.seed)
    rows = {}
    for variant in ("before", "after"):
        torch.manual_seed(args.seed)
        model = tame_untrained_resnet(build_model(cfg, load_pretrained=False)).train()
        if variant == "before":
            as_before(model)
        count(model, data[:1])  # warm-up: first-call work (the folded BN's one-time scale)
        rows[variant] = count(model, data[1:])
    (wb, lb, gb), (wa, la, ga) = rows["before"], rows["after"]
    identical = all(torch.equal(x, y) for x, y in zip(lb, la)) and all(
        len(x) == len(y) and all(torch.equal(p, q) for p, q in zip(x, y)) for x, y in zip(gb, ga))
    per = lambda v: round(v / args.steps, 1)  # noqa: E731
    out = {
        "cell": cell, "profile": args.profile, "width": cfg["model"]["width"],
        "images_per_step": len(data[0][0]), "steps": args.steps,
        "ops_before": per(wb.ops), "ops_after": per(wa.ops),
        "non_view_ops_before": per(wb.non_views), "non_view_ops_after": per(wa.non_views),
        "syncs_before": per(sum(wb.syncs.values())), "syncs_after": per(sum(wa.syncs.values())),
        "ops_ratio": round(wa.ops / wb.ops, 3), "non_view_ops_ratio": round(wa.non_views / wb.non_views, 3),
        "syncs_ratio": round(sum(wa.syncs.values()) / max(sum(wb.syncs.values()), 1), 3),
        "identical": identical,
        "sync_sites_after": {k: per(v) for k, v in wa.syncs.most_common(args.sites)},
    }
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", nargs="+", default=DEFAULT_CELLS)
    p.add_argument("--profile", default="paper")
    p.add_argument("--width", type=float, default=None, help="override model.width (counts do "
                   "not depend on it; a narrow model just runs faster on a CPU)")
    p.add_argument("--synthetic", action="store_true", help="use the klrpn data synth output")
    p.add_argument("--steps", type=int, default=2, help="counted steps per variant (after one "
                   "warm-up step)")
    p.add_argument("--sites", type=int, default=8, help="sync sites listed")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    for cell in args.cells:
        print(json.dumps(bench_cell(cell, args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
