"""``build_model(cfg)``: the detector of one cell, from its resolved configuration."""

from __future__ import annotations

from pathlib import Path

from klrpn.models.anchors import BaselineAnchorGenerator
from klrpn.models.backbones import ResNet101, VGG16, width_init_scale
from klrpn.models.detector import Backbone, DetectionTransform, TwoStageDetector
from klrpn.models.roi_heads import DetectionHeads, FastRCNNHead, RFCNHead
from klrpn.models.rpn import KLRPN, BaselineRPN, BaselineRPNHead, KLRPNHead

__all__ = ["build_model", "TwoStageDetector"]


def build_model(cfg: dict, *, load_pretrained: bool | None = None) -> TwoStageDetector:
    """The detector of a cell (see docs/models.md). ``load_pretrained=None`` follows
    ``model.pretrained``; ImageNet weights load only at full width, from
    ``model.weights_file`` or, with ``model.weights_style: caffe``, ``model.caffe_weights_file``."""
    m = cfg["model"]
    num_classes = cfg["dataset"]["num_classes"]
    backbone_net = build_backbone(m)
    if (m["pretrained"] if load_pretrained is None else load_pretrained):
        if m["width"] != 1.0 or (m["backbone"] == "resnet101" and m["resnet_blocks"] != [3, 4, 23, 3]):
            raise ValueError(f"cell {cfg.get('cell')}: model.pretrained needs the full-size "
                             f"{m['backbone']} (model.width 1.0)")
        backbone_net.load_imagenet(Path(m["weights_dir"]) / weights_file(m))
    backbone_net.freeze(m["frozen"])
    body, top = backbone_net.split()
    backbone = Backbone(body, backbone_net.out_channels)

    rpn = build_rpn(m, backbone.out_channels)
    roi = m["roi"]
    init_scale = width_init_scale(m["width"])  # 1 at full width; the heads' fan-in shrinks with it
    if m["detector"] == "faster_rcnn":
        box_head = FastRCNNHead(top=top, top_channels=backbone_net.top_channels,
                                num_classes=num_classes, pool_size=roi["pool_size"],
                                sampling_ratio=roi["sampling_ratio"], class_agnostic=roi["class_agnostic"],
                                cls_init_std=roi["cls_init_std"] * init_scale,
                                bbox_init_std=roi["bbox_init_std"] * init_scale)
    else:
        box_head = RFCNHead(layer4=top, top_channels=backbone_net.top_channels,
                            num_classes=num_classes, channels=m["rfcn"]["channels"],
                            k=m["rfcn"]["k"], sampling_ratio=roi["sampling_ratio"],
                            class_agnostic=roi["class_agnostic"],
                            cls_init_std=roi["cls_init_std"], bbox_init_std=roi["bbox_init_std"],
                            init_scale=init_scale)
    roi_heads = DetectionHeads(
        box_head=box_head, num_classes=num_classes, class_agnostic=roi["class_agnostic"],
        smooth_l1_beta=roi["smooth_l1_beta"], fg_iou_thresh=roi["fg_iou_thresh"],
        bg_iou_thresh=roi["bg_iou_thresh"], batch_size_per_image=roi["batch_size_per_image"],
        positive_fraction=roi["positive_fraction"], bbox_reg_weights=roi["bbox_reg_weights"],
        score_thresh=roi["score_thresh"], nms_thresh=roi["nms_thresh"],
        detections_per_img=roi["detections_per_img"])
    inp = cfg["input"]
    caffe = m.get("weights_style", "torchvision") == "caffe"
    transform = DetectionTransform(train_min_sizes=inp["min_size"], test_min_size=inp["test_min_size"],
                                   max_size=inp["max_size"],
                                   image_mean=inp["caffe_pixel_mean"] if caffe else inp["pixel_mean"],
                                   image_std=inp["pixel_std"], style="caffe" if caffe else "torchvision",
                                   pad_multiple=inp["pad_multiple"])
    return TwoStageDetector(backbone, rpn, roi_heads, transform, roi_loss_weight=m["roi_loss_weight"])


def weights_file(m: dict) -> str:
    """The ImageNet weights file name of ``model.weights_style``."""
    return m["caffe_weights_file"] if m.get("weights_style", "torchvision") == "caffe" else m["weights_file"]


def build_backbone(m: dict):
    if m["backbone"] == "vgg16":
        return VGG16(width=m["width"], pool_size=m["roi"]["pool_size"])
    # R-FCN keeps layer4 at stride 16 with dilation 2 (R-FCN [11] §3)
    return ResNet101(width=m["width"], blocks=tuple(m["resnet_blocks"]),
                     dilate_layer4=m["detector"] == "rfcn",
                     caffe=m.get("weights_style", "torchvision") == "caffe")


def build_rpn(m: dict, in_channels: int):
    # the baseline's generate_anchors: base size = its feature stride (16), scales x 16 px
    stride = m["feature_stride"]
    anchor_generator = BaselineAnchorGenerator(scales=m["anchor_scales"], ratios=m["anchor_ratios"],
                                               stride=stride, base_size=stride)
    num_anchors = anchor_generator.num_anchors_per_location()[0]
    r = m["rpn"]
    common = dict(
        anchor_generator=anchor_generator, fg_iou_thresh=r["fg_iou_thresh"],
        bg_iou_thresh=r["bg_iou_thresh"], batch_size_per_image=r["batch_size_per_image"],
        positive_fraction=r["positive_fraction"],
        pre_nms_top_n={"training": r["pre_nms_top_n_train"], "testing": r["pre_nms_top_n_test"]},
        post_nms_top_n={"training": r["post_nms_top_n_train"], "testing": r["post_nms_top_n_test"]},
        nms_thresh=r["nms_thresh"], drop_cross_boundary=r["drop_cross_boundary"])
    if m["proposal"] == "rpn":
        head = BaselineRPNHead(in_channels=in_channels, channels=r["channels"],
                               num_anchors=num_anchors, init_std=r["init_std"])
        return BaselineRPN(head=head, smooth_l1_beta=r["smooth_l1_beta"], **common)
    k = m["klrpn"]
    head = KLRPNHead(in_channels=in_channels, channels=r["channels"], num_anchors=num_anchors,
                     init_std=r["init_std"], new_init_std=k["init_std"])
    return KLRPN(head=head, gamma=k["gamma"], neg_var=k["neg_var"], score_eps=k["score_eps"],
                 score_rule=k.get("score", "eq10"), **common)

