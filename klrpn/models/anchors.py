"""The baseline's anchors behind torchvision's ``AnchorGenerator`` interface.

jwyang/faster-rcnn.pytorch, ``lib/model/rpn/generate_anchors.py`` (the py-faster-rcnn code):

* ``generate_anchors`` (L45-56): a reference window ``(0, 0, base_size - 1, base_size - 1)``
  (base size 16, centre 7.5 in its inclusive pixel indices), first enumerated over the aspect
  ratios, then each ratio over the scales: anchor ``a = ratio_index * len(scales) + scale_index``;
* ``_ratio_enum`` (L83-94): ``ws = round(sqrt(16 * 16 / ratio))``, ``hs = round(ws * ratio)``
  (``np.round``: half to even), so ratio 0.5 gives 23 x 12 and ratio 2 gives 11 x 22;
* ``_scale_enum`` (L96-105): ``ws * scale``, ``hs * scale`` around the same centre, e.g. scale 8:
  184 x 96, 128 x 128, 88 x 176;
* ``_mkanchors`` (L69-81): ``x_ctr -+ 0.5 (ws - 1)``: inclusive pixel boxes.

``anchor_target_layer.py`` and ``proposal_layer.py`` shift these A anchors by
``stride * (x, y)`` over the feature map (``np.meshgrid`` + ``ravel``: x fastest) and lay them out
``all_anchors = anchors.view(1, A, 4) + shifts.view(K, 1, 4)``, i.e. index ``(y * W + x) * A + a``
-- the order of torchvision's ``grid_anchors`` and of the heads' ``[N, A * 4, H, W]`` channels
(``klrpn.models.rpn``: channel ``4 a + c`` is offset c of anchor a).

**Coordinates.** The baseline's boxes are inclusive pixel indices: its ``bbox_transform`` and
``bbox_overlaps`` use ``w = x2 - x1 + 1`` and centre ``x1 + w / 2``. The inclusive box
``[x1, x2]`` is the continuous box ``[x1, x2 + 1]`` that torchvision's ``BoxCoder`` and
``box_iou`` (``w = x2 - x1``) and this project's data (VOC ``xmin - 1 .. xmax``, COCO
``x .. x + w``) use: same width, same centre, same IoU, same regression targets. So the anchor
the baseline writes as ``[-84, -40, 99, 55]`` (ratio 0.5, scale 8; the file's Matlab check,
L19, lists it 1-based as ``-83 -39 100 56``) is ``[-84, -40, 100, 56]`` here: 184 x 96, centred
at 8 = pixel index 7.5 (the middle of the first stride-16 cell), then ``+ 16 i``.
torchvision's own ``AnchorGenerator(sizes=(128, 256, 512))`` centres them at ``16 i``, with other
sizes (182 x 90, 128 x 128, 90 x 182 for 128 px).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList


def baseline_cell_anchors(*, base_size: int, ratios, scales) -> Tensor:
    """The A = len(ratios) * len(scales) anchors of the cell at the origin, ``[A, 4]`` float64,
    continuous x1y1x2y2 (see the module docstring): ratio-major, scale-minor."""
    ratios = torch.as_tensor(ratios, dtype=torch.float64)
    scales = torch.as_tensor(scales, dtype=torch.float64)
    ctr = 0.5 * (base_size - 1)  # _whctrs of (0, 0, base_size - 1, base_size - 1): 7.5
    ws = torch.round(torch.sqrt(base_size * base_size / ratios))  # _ratio_enum
    hs = torch.round(ws * ratios)
    ws = (ws[:, None] * scales[None, :]).reshape(-1)  # _scale_enum, per ratio: [A]
    hs = (hs[:, None] * scales[None, :]).reshape(-1)
    # _mkanchors gives the inclusive [ctr - (w - 1) / 2, ctr + (w - 1) / 2]; + 1 on x2, y2
    return torch.stack([ctr - 0.5 * (ws - 1), ctr - 0.5 * (hs - 1),
                        ctr + 0.5 * (ws - 1) + 1, ctr + 0.5 * (hs - 1) + 1], dim=1)

GRID_CACHE = 64  # anchor grids kept (one per padded map size; ~0.35 MB each at 600 x 1000)


class BaselineAnchorGenerator(AnchorGenerator):
    """torchvision's ``AnchorGenerator`` interface (``anchor_generator(image_list, [feature])``,
    ``num_anchors_per_location()``) with the baseline's anchors on one feature map.

    ``scales`` are multiples of ``base_size`` (the baseline's ANCHOR_SCALES, base size 16);
    ``ratios`` are height / width (ANCHOR_RATIOS, as in torchvision); the cell at feature
    position (x, y) is shifted by ``stride * (x, y)`` (the baseline's FEAT_STRIDE). Anchors are
    always float32 on the feature map's device, whatever the feature map's dtype (bf16 under
    autocast): box geometry stays in float32.
    """

    def __init__(self, *, scales, ratios, stride: int, base_size: int = 16):
        self.scales, self.ratios = tuple(float(s) for s in scales), tuple(float(r) for r in ratios)
        self.stride, self.base_size = int(stride), int(base_size)
        # torchvision's ``sizes`` (pixels), kept for num_anchors_per_location and repr
        super().__init__(sizes=(tuple(base_size * s for s in self.scales),),
                         aspect_ratios=(self.ratios,))
        self._grids: OrderedDict[tuple, Tensor] = OrderedDict()  # (H, W, device) -> anchors

    def generate_anchors(self, scales, aspect_ratios, dtype: torch.dtype = torch.float32,
                         device: torch.device = torch.device("cpu")) -> Tensor:
        """Called by ``AnchorGenerator.__init__`` with the pixel ``sizes``: the baseline's
        cell anchors instead of torchvision's."""
        cell = baseline_cell_anchors(base_size=self.base_size, ratios=aspect_ratios,
                                     scales=[s / self.base_size for s in scales])
        return cell.to(dtype=dtype, device=device)

    def grid(self, feature: Tensor) -> Tensor:
        """The ``[H * W * A, 4]`` float32 anchors of ``feature``'s map, made once per map size
        and device and reused (a training run sees a few padded sizes): no work per step."""
        key = (tuple(feature.shape[-2:]), feature.device)
        if key in self._grids:
            self._grids.move_to_end(key)
            return self._grids[key]
        with torch.inference_mode(False):  # a normal tensor, also when made during evaluation
            self.set_cell_anchors(torch.float32, feature.device)
            # Python strides: torchvision's int32 shifts times a number, no tensor from the host
            (anchors,) = self.grid_anchors([list(key[0])], [[self.stride, self.stride]])
        self._grids[key] = anchors
        if len(self._grids) > GRID_CACHE:
            self._grids.popitem(last=False)  # the least recently used map size
        return anchors

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        """One ``[H * W * A, 4]`` float32 tensor per image (the same for every image)."""
        if len(feature_maps) != 1:
            raise ValueError(f"BaselineAnchorGenerator takes one feature map, got {len(feature_maps)}")
        anchors = self.grid(feature_maps[0])
        return [anchors for _ in image_list.image_sizes]
