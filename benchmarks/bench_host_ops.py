"""Host-side work of one training step: operations dispatched, and the points where a GPU run's
host would wait for the GPU, before vs after issue 11's host-side changes, in one invocation;
with ``--blocks``, the same counts for the anchor/RoI matching and sampling alone, torchvision's
per-image code vs the batched one of ``klrpn.models.matching``.

On a GPU a training step costs the host one kernel launch (a few microseconds) per dispatched
operation, and every synchronisation point (a data-dependent size: ``nonzero``, a boolean-mask
read, NMS; a ``.item()``) drains the GPU's queue: the GPU idles while the host catches up. Both
are properties of the code, not of the device, so they are counted here on any device (the CPU
on a machine without a GPU) with ``klrpn.hostwork.HostWork``, a ``TorchDispatchMode``, around the
step's forward and backward passes (``klrpn.train.forward_losses`` and the backward of its
total; the optimiser update, foreach on a GPU, is left out). What counts as a sync point is
listed in ``klrpn/hostwork.py``: every operation whose output size depends on the data
(``nonzero``, boolean-mask reads and tensor writes, ``masked_select``, ``unique``,
``bincount``, ``repeat_interleave``, NMS) and every scalar read (``.item()``,
``_local_scalar_dense``, ``torch.equal``) except on the optimiser's CPU step counters.
Tensors made from Python data (``torch.tensor``, ``torch.as_tensor`` of a list), a blocking
host-to-device copy in a GPU run, are counted apart (``host_data``).

Variants of the training step, each on a fresh model of the same seed and the same batches:
- ``before``: torchvision's ``FrozenBatchNorm2d`` (scale and shift recomputed on every call)
  and the RPN losses reading the sampled anchors through boolean masks, as before issue 11;
- ``after``: the package as it is (``FoldedFrozenBatchNorm2d``, index gathers).
Both must give the same losses and gradients bit for bit (checked, ``identical`` in the output).

    PYTHONPATH=benchmarks .venv/bin/python benchmarks/bench_host_ops.py --profile paper \
        --synthetic --width 0.25 [--cells C ...] [--steps 2] [--sites 8]

Prints one JSON line per cell: per step, operations (all, and those that are not views: views
only relabel a tensor's memory and launch nothing on a GPU) and sync points before and after,
their ratios, and the busiest sync sites after.

    PYTHONPATH=benchmarks .venv/bin/python benchmarks/bench_host_ops.py --blocks \
        [--cells C ...] [--images 4] [--height 600] [--width-px 1000]

Builds nothing but the cell's RPN (anchors, thresholds) and second-stage parameters: one batch
of ``--images`` images of ``--height`` x ``--width-px`` pixels (padded to the cell's
``pad_multiple``, stride-16 anchors), a fixed spread of ground-truth boxes per image, 2000-ish
random proposals per image, and counts the RPN's anchor assignment + 256-anchor draw and the
second stage's RoI assignment (ground truth added to the proposals; each proposal's class) +
fixed-count draw: ``old``
= ``ProposalNetwork.assign_targets_to_anchors`` (torchvision's ``Matcher``) +
``BalancedPositiveNegativeSampler``, ``RoIHeads.add_gt_proposals`` /
``assign_targets_to_proposals`` + ``BaselineRoISampler``; ``new`` = ``pad_per_image`` +
``match_boxes`` + ``sample_anchors`` / ``sample_rois``. One JSON line per cell.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.image_list import ImageList
from torchvision.ops.misc import FrozenBatchNorm2d

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import tame_untrained_resnet, use_synthetic_data  # noqa: E402
from klrpn import train  # noqa: E402
from klrpn.config import load_cell  # noqa: E402
from klrpn.hostwork import HostWork  # noqa: E402
from klrpn.models import build_model, build_rpn  # noqa: E402
from klrpn.models.backbones import FoldedFrozenBatchNorm2d  # noqa: E402
from klrpn.models.matching import match_boxes, pad_per_image, sample_anchors, sample_rois  # noqa: E402
from klrpn.models.roi_heads import DetectionHeads  # noqa: E402
from klrpn.models.rpn import KLRPN, BaselineRPN, ProposalNetwork  # noqa: E402

DEFAULT_CELLS = ["coco-faster_rcnn-resnet101-klrpn", "coco-faster_rcnn-vgg16-rpn",
                 "coco-rfcn-resnet101-klrpn", "voc07-rfcn-resnet101-rpn"]


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
        "host_data_before": per(sum(wb.host_data.values())),
        "host_data_after": per(sum(wa.host_data.values())),
    }
    return out


# --- --blocks: the matching and sampling alone ------------------------------------------------
GT_PER_IMAGE = (1, 4, 12, 40)  # cycled over the images: one box to COCO's dense images (cap 50)
PROPOSALS_PER_IMAGE = (2000, 1700, 2000, 1200)  # post-NMS top 2000; NMS may leave fewer


def random_boxes(n: int, height: int, width: int, gen: torch.Generator) -> torch.Tensor:
    """[n, 4] float32 boxes of 16-400 px inside the image."""
    wh = torch.randint(16, 400, (n, 2), generator=gen).float()
    wh = torch.minimum(wh, torch.tensor([width, height], dtype=torch.float32))
    xy = torch.rand(n, 2, generator=gen) * (torch.tensor([width, height]) - wh)
    return torch.cat([xy, xy + wh], dim=1)


def block_inputs(cfg: dict, args) -> dict:
    """Anchors of a padded ``--height`` x ``--width-px`` batch, ground truth and proposals."""
    gen = torch.Generator().manual_seed(args.seed)
    h, w, b = args.height, args.width_px, args.images
    pad = cfg["input"]["pad_multiple"]
    stride = cfg["model"]["feature_stride"]
    padded = (-(-h // pad) * pad, -(-w // pad) * pad)
    rpn = build_rpn(cfg["model"], 8)
    images = ImageList(torch.zeros(b, 3, *padded), [(h, w)] * b)
    anchors = rpn.anchor_generator(images, [torch.zeros(b, 8, padded[0] // stride, padded[1] // stride)])
    gt = [random_boxes(GT_PER_IMAGE[i % len(GT_PER_IMAGE)], h, w, gen) for i in range(b)]
    labels = [torch.randint(1, cfg["dataset"]["num_classes"] + 1, (len(g),), generator=gen) for g in gt]
    proposals = [random_boxes(PROPOSALS_PER_IMAGE[i % len(PROPOSALS_PER_IMAGE)], h, w, gen)
                 for i in range(b)]
    return {"rpn": rpn, "anchors": anchors, "sizes": images.image_sizes, "gt": gt,
            "labels": labels, "proposals": proposals}


def old_blocks(x: dict, roi: DetectionHeads):
    """What the models run today, per image: the RPN's assignment and torchvision's sampler,
    then the second stage's (``RoIHeads.select_training_samples`` up to the draw)."""
    rpn = x["rpn"]
    labels, _ = rpn.assign_targets_to_anchors(x["anchors"], [{"boxes": g} for g in x["gt"]], x["sizes"])
    pos, neg = rpn.fg_bg_sampler(labels)
    torch.cat(pos).bool(), torch.cat(neg).bool()  # as ProposalNetwork.forward
    yield "rpn"
    proposals = roi.add_gt_proposals(x["proposals"], x["gt"])
    _, roi_labels = roi.assign_targets_to_proposals(proposals, x["gt"], x["labels"])
    roi.subsample(roi_labels)
    yield "roi"


def new_blocks(x: dict, cfg: dict):
    """The same with ``klrpn.models.matching``, the whole batch at once."""
    r, roi = cfg["model"]["rpn"], cfg["model"]["roi"]
    inside = torch.stack([ProposalNetwork.inside(a, s) for a, s in zip(x["anchors"], x["sizes"])])  # [B, M]
    gt_boxes, gt_valid = pad_per_image(x["gt"])  # [B, G, 4], [B, G]
    m = match_boxes(boxes=x["anchors"][0], gt_boxes=gt_boxes, gt_valid=gt_valid, high=r["fg_iou_thresh"],
                    low=r["bg_iou_thresh"], allow_low_quality_matches=True, box_valid=inside)
    gt_boxes.gather(1, m.matches.clamp(min=0)[:, :, None].expand(-1, -1, 4))  # matched: [B, M, 4]
    sample_anchors(labels=m.labels, batch_size_per_image=r["batch_size_per_image"],
                   positive_fraction=r["positive_fraction"])
    yield "rpn"
    gt_classes, _ = pad_per_image(x["labels"])  # [B, G]
    proposals, valid = pad_per_image(x["proposals"])  # [B, P, 4], [B, P]
    boxes, valid = torch.cat([proposals, gt_boxes], dim=1), torch.cat([valid, gt_valid], dim=1)
    m = match_boxes(boxes=boxes, gt_boxes=gt_boxes, gt_valid=gt_valid, high=roi["fg_iou_thresh"],
                    low=roi["bg_iou_thresh"], allow_low_quality_matches=False, box_valid=valid)
    classes = gt_classes.gather(1, m.matches.clamp(min=0))  # [B, P + G]
    torch.where(m.labels == 1, classes, m.labels)  # class, 0 background, -1 ignored
    sample_rois(quality=m.quality, valid=valid, batch_size_per_image=roi["batch_size_per_image"],
                positive_fraction=roi["positive_fraction"], fg_thresh=roi["fg_iou_thresh"],
                bg_thresh_hi=roi["bg_iou_thresh"])
    yield "roi"


def count_stages(stages) -> dict:
    """Runs the generator ``stages`` one stage at a time, each under its own counter."""
    out = {}
    while True:
        with HostWork() as work:
            name = next(stages, None)
        if name is None:
            return out
        out[name] = {"ops": work.ops, "non_view_ops": work.non_views, "syncs": work.total_syncs,
                     "sync_ops": dict(work.sync_ops.most_common()),
                     "host_data": sum(work.host_data.values())}


def bench_blocks(cell: str, args) -> dict:
    cfg = load_cell(cell, args.profile)
    roi = cfg["model"]["roi"]
    heads = DetectionHeads(
        box_head=nn.Identity(), num_classes=cfg["dataset"]["num_classes"],
        class_agnostic=roi["class_agnostic"], smooth_l1_beta=roi["smooth_l1_beta"],
        fg_iou_thresh=roi["fg_iou_thresh"], bg_iou_thresh=roi["bg_iou_thresh"],
        batch_size_per_image=roi["batch_size_per_image"], positive_fraction=roi["positive_fraction"],
        bbox_reg_weights=roi["bbox_reg_weights"], score_thresh=roi["score_thresh"],
        nms_thresh=roi["nms_thresh"], detections_per_img=roi["detections_per_img"])
    x = block_inputs(cfg, args)
    torch.manual_seed(args.seed)
    old = count_stages(old_blocks(x, heads))
    new = count_stages(new_blocks(x, cfg))
    total = lambda d, k: sum(v[k] for v in d.values())  # noqa: E731
    return {
        "cell": cell, "mode": "blocks", "images": args.images,
        "image_size": [args.height, args.width_px], "anchors_per_image": len(x["anchors"][0]),
        "gt_per_image": [len(g) for g in x["gt"]], "proposals_per_image": [len(p) for p in x["proposals"]],
        "rois_per_image": roi["batch_size_per_image"], "old": old, "new": new,
        **{k: [total(old, k), total(new, k)] for k in ("ops", "non_view_ops", "syncs", "host_data")},
    }


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
    p.add_argument("--blocks", action="store_true", help="count the matching and sampling "
                   "alone: torchvision's per-image code vs klrpn.models.matching")
    p.add_argument("--images", type=int, default=4, help="--blocks: images in the batch")
    p.add_argument("--height", type=int, default=600, help="--blocks: image height (px)")
    p.add_argument("--width-px", type=int, default=1000, help="--blocks: image width (px)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    for cell in args.cells:
        print(json.dumps(bench_blocks(cell, args) if args.blocks else bench_cell(cell, args)),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
