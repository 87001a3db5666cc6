"""Box geometry stays float32 under bf16 autocast (issue 8, finding 1): given the same head
outputs, an autocast run's anchors, proposals, both stages' targets, the RoIs given to
RoIAlign / PS-RoIAlign and the detections equal those of a float32 run, value for value.
On the CPU always; on CUDA too when a GPU is present (benchmarks/gpu_checks.sh runs them there)."""

import pytest
import torch
from torch import nn

from klrpn.config import load_cell
from klrpn.models import build_model

CELLS = ["coco-faster_rcnn-vgg16-rpn", "voc07-rfcn-resnet101-klrpn"]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                reason="no CUDA device"))]


def _to(images, targets, device):
    return ([im.to(device) for im in images],
            [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets])


def _batch(cfg):
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 112, 144, generator=g), torch.rand(3, 136, 120, generator=g)]
    # fractional ground truth: bf16 (8 bits of mantissa, a step of 0.5 px at 64-128 px)
    # would move these corners
    targets = [{"boxes": torch.tensor([[10.3, 12.6, 60.7, 70.2], [50.3, 40.7, 120.1, 100.9]]),
                "labels": torch.tensor([1, 3])},
               {"boxes": torch.tensor([[20.2, 30.9, 101.7, 111.4]]), "labels": torch.tensor([2])}]
    for t in targets:  # the training short side, as the train loader draws it per batch
        t["train_size"] = cfg["input"]["min_size"][-1]
    return images, targets


def _fixed(shape, seed):
    """Head outputs on the bf16 grid, so a bf16 head and a float32 head can return the same
    values; returned in the feature's dtype, as a real head under autocast would."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).mul_(0.5).bfloat16()


class FixedRPNHead(nn.Module):
    def __init__(self, keys, num_anchors):
        super().__init__()
        self.keys, self.num_anchors = keys, num_anchors

    def forward(self, x):
        n, _, h, w = x.shape
        return {k: _fixed((n, h * w * self.num_anchors, 2 if k == "logits" else 4), i).to(x.device, x.dtype)
                for i, k in enumerate(self.keys)}


class FixedBoxHead(nn.Module):
    """Records the RoIs it is given and returns fixed [R, C + 1] scores and [R, 4 or 4(C + 1)]
    deltas in the feature's dtype."""

    def __init__(self, num_classes, box_outputs):
        super().__init__()
        self.num_classes, self.box_outputs, self.rois = num_classes, box_outputs, []

    def forward(self, feature, rois):
        """``rois``: [R, 5] in training, [K_i, 4] per image in evaluation."""
        rois = [rois] if torch.is_tensor(rois) else rois
        self.rois.append([p.detach().clone() for p in rois])
        r = sum(len(p) for p in rois)
        return (_fixed((r, self.num_classes + 1), 10).to(feature.device, feature.dtype),
                _fixed((r, self.box_outputs), 11).to(feature.device, feature.dtype))


def _record(obj, name, store):
    """Wrap ``obj.name`` so that each call appends (args, result) to ``store[name]``."""
    fn = getattr(obj, name)

    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        store.setdefault(name, []).append((args, out))
        return out
    setattr(obj, name, wrapped)


def _run(cell, autocast: bool, device: str = "cpu"):
    torch.manual_seed(0)
    cfg = load_cell(cell, "smoke")
    model = build_model(cfg)
    rpn, roi = model.rpn, model.roi_heads
    rpn.head = FixedRPNHead(list(rpn.head(torch.zeros(1, rpn.head.conv.in_channels, 1, 1))),
                            rpn.head.num_anchors)
    roi.box_head = FixedBoxHead(cfg["dataset"]["num_classes"],
                                4 if roi.class_agnostic else 4 * (cfg["dataset"]["num_classes"] + 1))
    model.to(device)
    seen = {}
    _record(rpn.anchor_generator, "grid", seen)
    _record(rpn, "assign_targets_to_anchors", seen)
    _record(rpn, "compute_loss", seen)
    _record(roi, "select_training_samples", seen)
    images, targets = _to(*_batch(cfg), device)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
        torch.manual_seed(1)  # the samplers' draws
        model.train()
        losses = model(images, targets)
        model.eval()
        with torch.no_grad():
            detections = model(images)
            proposals = model.propose(images)
    rpn_labels, matched_gt = seen["assign_targets_to_anchors"][0][1]
    (pred, gt_deltas, pos, neg), _ = seen["compute_loss"][0]
    roi_proposals, roi_labels, roi_targets = seen["select_training_samples"][0][1]
    return {
        "anchors": seen["grid"][0][1],                           # train-time anchors
        "rpn matched gt": matched_gt, "rpn labels": rpn_labels,
        "rpn targets": [gt_deltas], "rpn sampled": [pos, neg],
        "rpn predictions": list(pred.values()),
        "roi proposals": roi_proposals, "roi labels": roi_labels, "roi targets": roi_targets,
        "RoIAlign rois (train)": roi.box_head.rois[0], "RoIAlign rois (test)": roi.box_head.rois[1],
        "detections": [d[k] for d in detections for k in ("boxes", "scores", "labels")],
        "proposals": [p[k] for p in proposals for k in sorted(p)],
        "losses": [losses[k] for k in sorted(losses)],
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cell", CELLS)
def test_box_geometry_is_float32_and_equal_under_bf16_autocast(cell, device):
    fp32, bf16 = _run(cell, autocast=False, device=device), _run(cell, autocast=True, device=device)
    assert bf16.keys() == fp32.keys()
    for name in fp32:
        assert len(bf16[name]) == len(fp32[name]) > 0, name
        for a, b in zip(fp32[name], bf16[name]):
            if b.is_floating_point():
                assert b.dtype == torch.float32, (name, b.dtype)
            torch.testing.assert_close(b, a, rtol=0, atol=0, msg=name)
    # the sampled RoIs: a fixed number per image (the baseline's sampler), ground truth among them
    per_image = load_cell(cell, "smoke")["model"]["roi"]["batch_size_per_image"]
    assert fp32["roi proposals"][:, 0].long().bincount().tolist() == [per_image, per_image]
    assert [len(d) for d in fp32["detections"][::3]] != [0, 0]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cell", ["voc0712-faster_rcnn-resnet101-klrpn", "voc07-rfcn-resnet101-rpn"])
def test_real_heads_get_float32_rois_and_give_float32_boxes_under_autocast(cell, device):
    """The unpatched model: convolutions in bf16, RoIAlign / PS-RoIAlign fed float32 RoIs,
    float32 losses and detections."""
    torch.manual_seed(0)
    cfg = load_cell(cell, "smoke")
    model = build_model(cfg).to(device)
    rois, head_outputs = [], []
    model.roi_heads.box_head.register_forward_pre_hook(  # [R, 5] in training, per image in eval
        lambda m, args: rois.extend([args[1].dtype] if torch.is_tensor(args[1]) else [p.dtype for p in args[1]]))
    model.rpn.head.register_forward_hook(lambda m, args, out: head_outputs.extend(v.dtype for v in out.values()))
    images, targets = _to(*_batch(cfg), device)
    with torch.autocast(device, dtype=torch.bfloat16):
        model.train()
        losses = model(images, targets)
        sum(losses.values()).backward()
        model.eval()
        with torch.no_grad():
            detections = model(images)
    assert set(head_outputs) == {torch.bfloat16}  # the RPN head's convolutions did run in bf16
    assert set(rois) == {torch.float32} and len(rois) == 3
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    assert all(d["boxes"].dtype == d["scores"].dtype == torch.float32 for d in detections)
