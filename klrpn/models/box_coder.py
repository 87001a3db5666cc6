"""torchvision's ``BoxCoder`` without host-to-device copies: the same arithmetic, bit for bit
(``tests/models/test_box_coder.py``).

torchvision's ``encode_single`` makes its weights tensor from a Python tuple on every call and
``decode_single`` makes two ``torch.tensor(0.5)``: each is a blocking host-to-device copy in a
GPU run, which waits for the device's queue. Here ``encode_single`` keeps one weights tensor
per device and dtype and calls torchvision's own ``encode_boxes``; ``decode_single`` multiplies
by the Python number 0.5 (exact in every float dtype, so the same products) and broadcasts:
``rel_codes`` [..., 4k] against ``boxes`` [..., 4] (e.g. the deltas of a whole batch [N, M, 4]
against the anchors [M, 4] they share) gives [..., 4k].
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection import _utils as det_utils


class BoxCoder(det_utils.BoxCoder):
    def __init__(self, weights, bbox_xform_clip: float | None = None):
        if bbox_xform_clip is None:
            super().__init__(tuple(weights))
        else:
            super().__init__(tuple(weights), bbox_xform_clip)
        self._weights: dict[tuple, Tensor] = {}

    def weights_on(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        """The weights [4] as a tensor of ``dtype`` on ``device``, made once."""
        key = (dtype, device)
        if key not in self._weights:
            self._weights[key] = torch.as_tensor(self.weights, dtype=dtype, device=device)
        return self._weights[key]

    def encode_single(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        """Offsets [K, 4] of ``reference_boxes`` [K, 4] (the targets) relative to ``proposals``."""
        weights = self.weights_on(reference_boxes.dtype, reference_boxes.device)
        return det_utils.encode_boxes(reference_boxes, proposals, weights)

    def decode_single(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        """Boxes [..., 4k] from offsets ``rel_codes`` [..., 4k] and reference ``boxes`` [..., 4]
        (broadcast over the leading dimensions)."""
        boxes = boxes.to(rel_codes.dtype)
        widths = boxes[..., 2] - boxes[..., 0]  # [...]
        heights = boxes[..., 3] - boxes[..., 1]
        ctr_x = boxes[..., 0] + 0.5 * widths
        ctr_y = boxes[..., 1] + 0.5 * heights
        wx, wy, ww, wh = self.weights
        dx = rel_codes[..., 0::4] / wx  # [..., k]
        dy = rel_codes[..., 1::4] / wy
        dw = torch.clamp(rel_codes[..., 2::4] / ww, max=self.bbox_xform_clip)  # no exp overflow
        dh = torch.clamp(rel_codes[..., 3::4] / wh, max=self.bbox_xform_clip)
        pred_ctr_x = dx * widths[..., None] + ctr_x[..., None]
        pred_ctr_y = dy * heights[..., None] + ctr_y[..., None]
        half_w = 0.5 * (torch.exp(dw) * widths[..., None])  # centre to corner
        half_h = 0.5 * (torch.exp(dh) * heights[..., None])
        pred = torch.stack((pred_ctr_x - half_w, pred_ctr_y - half_h,
                            pred_ctr_x + half_w, pred_ctr_y + half_h), dim=-1)  # [..., k, 4]
        return pred.flatten(-2)  # [..., 4k]
