"""The two-stage detector: transform -> backbone -> (KL-)RPN -> RoI heads (torchvision-style)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.transform import (GeneralizedRCNNTransform,
                                                    _resize_image_and_masks, resize_boxes)


class Backbone(nn.Module):
    """Wraps a body (image -> stride-16 map) into torchvision's feature dict ``{"0": map}``."""

    def __init__(self, body: nn.Module, out_channels: int):
        super().__init__()
        self.body = body
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        return OrderedDict([("0", self.body(x))])  # [N, C, H/16, W/16]


class DetectionTransform(GeneralizedRCNNTransform):
    """GeneralizedRCNNTransform with the baseline's resizing and a choice of input style.

    Resizing: short side ``target["train_size"]`` in training (drawn by the train loader:
    :mod:`klrpn.data.sampler`; without it the only entry of ``train_min_sizes``), else
    ``test_min_size``; the long side is capped at ``max_size`` unless it is None (the
    baseline: no cap). Normalisation: ``style="torchvision"`` maps RGB in [0, 1] to
    ``(x - image_mean) / image_std``; ``style="caffe"`` feeds BGR in [0, 255] minus
    ``image_mean`` (BGR order; ``image_std`` is ignored), as the baseline's caffe weights expect.
    Batching: a batch is zero-padded at the bottom and right to a multiple of ``pad_multiple``
    (torchvision's ``size_divisible``, 32 by default). A coarser multiple gives the GPU a small
    fixed set of input shapes, so cuDNN autotunes each shape once and the caching allocator
    reuses its blocks; the padding is outside ``image_sizes``, which bound anchors and boxes.
    """

    def __init__(self, *, train_min_sizes, test_min_size: int, max_size: int | None, image_mean,
                 image_std, style: str = "torchvision", pad_multiple: int = 32):
        if style not in ("torchvision", "caffe"):
            raise ValueError(f"unknown input style {style!r}: torchvision or caffe")
        if style == "caffe":
            image_std = (1.0, 1.0, 1.0)
        super().__init__(tuple(train_min_sizes), max_size if max_size is not None else 0,
                         list(image_mean), list(image_std), size_divisible=int(pad_multiple))
        self.train_min_sizes, self.test_min_size = tuple(train_min_sizes), int(test_min_size)
        self.max_size, self.style = max_size, style
        self._constants: dict[tuple, tuple[Tensor, Tensor]] = {}  # see constants()

    def normalize(self, image: Tensor) -> Tensor:
        """torchvision's ``normalize`` (or the caffe style) with the mean and std made once per
        dtype and device, not copied from the host for every image."""
        if not image.is_floating_point():
            raise TypeError(f"expected a float image in [0, 1], got {image.dtype}")
        mean, std = self.constants(image.dtype, image.device)  # [3, 1, 1] each
        if self.style == "caffe":
            return image.flip(0) * 255.0 - mean  # RGB [0, 1] -> BGR [0, 255], minus the mean
        return (image - mean) / std

    def constants(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        key = (dtype, device)
        if key not in self._constants:
            with torch.inference_mode(False):
                self._constants[key] = tuple(
                    torch.as_tensor(v, dtype=dtype, device=device)[:, None, None]
                    for v in (self.image_mean, self.image_std))
        return self._constants[key]

    def resize(self, image: Tensor, target: dict | None = None):
        h, w = image.shape[-2:]
        if self.training:
            size = target.get("train_size") if target is not None else None
            if size is None:
                if len(self.train_min_sizes) > 1:
                    raise ValueError(
                        f"multi-scale training ({list(self.train_min_sizes)}) needs each target's "
                        "'train_size' (drawn by klrpn.data.build_train_loader)")
                size = self.train_min_sizes[0]
        else:
            size = self.test_min_size
        max_size = float("inf") if self.max_size is None else self.max_size
        image, target = _resize_image_and_masks(image, int(size), max_size, target, None)
        if target is not None:
            target["boxes"] = scale_boxes(target["boxes"], (h, w), image.shape[-2:])
        return image, target


def scale_boxes(boxes: Tensor, original_size, new_size) -> Tensor:
    """torchvision's ``resize_boxes`` with the two ratios as Python numbers: float32 divisions
    done on the host (numpy), the same float32 products, no tensor copied to the device."""
    ratio_h, ratio_w = (float(np.float32(s) / np.float32(s0)) for s, s0 in zip(new_size, original_size))
    xmin, ymin, xmax, ymax = boxes.unbind(1)
    return torch.stack((xmin * ratio_w, ymin * ratio_h, xmax * ratio_w, ymax * ratio_h), dim=1)


class TwoStageDetector(GeneralizedRCNN):
    """Faster R-CNN or R-FCN with the baseline RPN or KL-RPN.

    train: ``model(images, targets)`` -> loss dict whose sum is the total loss (eq. 9: the RoI
    losses are multiplied by ``roi_loss_weight``); eval: ``model(images)`` -> one
    ``{"boxes", "labels", "scores"}`` per image, in input-image pixels; ``detect(images)`` ->
    those and the proposals behind them, from the same pass.
    """

    def __init__(self, backbone, rpn, roi_heads, transform, *, roi_loss_weight: float):
        super().__init__(backbone, rpn, roi_heads, transform)
        self.roi_loss_weight = roi_loss_weight

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        if not self.training:
            return self.detect(images)[0]
        if targets is None:
            raise ValueError("TwoStageDetector in training mode needs targets")
        images, targets = self.transform(images, targets)
        features = self.backbone(images.tensors)
        proposals, rpn_losses = self.rpn(images, features, targets)  # a padded ProposalBatch
        _, roi_losses = self.roi_heads(features, proposals, images.image_sizes, targets)
        return {**rpn_losses, **{k: self.roi_loss_weight * v for k, v in roi_losses.items()}}

    def detect(self, images: list[Tensor]) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
        """Eval mode, one pass: ``(detections, proposals)`` per image, both in input-image
        pixels; the proposals are exactly those the RoI head classified (see :meth:`propose`)."""
        transformed, features, proposals, original_sizes = self.first_stage(images)
        detections, _ = self.roi_heads(features, [p["boxes"] for p in proposals],
                                       transformed.image_sizes)
        detections = self.transform.postprocess(detections, transformed.image_sizes, original_sizes)
        return detections, self.to_input_pixels(proposals, transformed.image_sizes, original_sizes)

    @torch.no_grad()
    def propose(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """The first stage alone (eval mode): per image ``{"boxes" [K, 4] in input-image
        pixels, "scores" [K]}`` ranked by objectness as NMS saw it (baseline: foreground
        probability; KL-RPN: log of eq. 10's score), plus ``"log_var"`` [K, 4] for KL-RPN."""
        if self.training:
            raise RuntimeError("propose() is for analysis: call model.eval() first")
        transformed, _, proposals, original_sizes = self.first_stage(images)
        return self.to_input_pixels(proposals, transformed.image_sizes, original_sizes)

    def first_stage(self, images: list[Tensor]):
        """``(transformed images, features, proposals, original sizes)``, no targets."""
        original_sizes = [tuple(img.shape[-2:]) for img in images]
        transformed, _ = self.transform(images)
        features = self.backbone(transformed.tensors)
        proposals, _ = self.rpn(transformed, features)
        return transformed, features, proposals, original_sizes

    @staticmethod
    def to_input_pixels(proposals: list[dict], sizes, original_sizes) -> list[dict]:
        """Proposal boxes from transformed-image to input-image pixels (new dicts)."""
        return [{**p, "boxes": resize_boxes(p["boxes"], size, original)}
                for p, size, original in zip(proposals, sizes, original_sizes)]
