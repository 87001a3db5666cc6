"""Figure 3 of the paper: offset distributions of high- vs low-objectness proposals (issue 5).

Paper §3.2 / Fig. 3: for VGG-16 Faster R-CNN on COCO, RPN vs KL-RPN, on 100 minival (= val2017)
images: among the proposals whose IoU with some ground-truth box is > 0, per image the
(#GT x 5) proposals of highest and the (#GT x 5) of lowest objectness; the L1 offset from the
ground-truth box for x, y, w and h; red = high, blue = low objectness.

Definitions used here (the paper does not spell them out):

* matched GT of a proposal = the GT box with the highest IoU (ties: the first);
* offset = the absolute value of the standard box-coder encoding of the matched GT relative to
  the proposal, with unit weights: |dx| = |gx - px| / pw, |dy| = |gy - py| / ph,
  |dw| = |log(gw / pw)|, |dh| = |log(gh / ph)| (centres and sizes; torchvision's
  ``BoxCoder(weights=(1, 1, 1, 1))``), i.e. the L1 distance per coordinate in the space the
  regressor predicts;
* objectness = the score the model ranks proposals by (``model.propose``): baseline RPN the
  foreground probability, KL-RPN the log of eq. 10's score; only its order matters here;
* when an image has fewer than 2 x (#GT x 5) proposals with IoU > 0, the high and low samples
  overlap (both are still the top / bottom #GT x 5, or all proposals if fewer); the number of such
  images is reported;
* the images are the first ``num_images`` of the test split in the dataset's order.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import box_iou

from klrpn.atomic import atomic_output, atomic_write_text
from klrpn.layout import FINAL_NAME
from klrpn.render import template

COORDS = ("x", "y", "w", "h")
_CODER = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))


class Figure3Error(ValueError):
    """Inputs unusable for Figure 3; the message names the file or the model."""


def match_proposals(proposals: torch.Tensor, gt_boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per proposal, its highest IoU with any GT box and that GT box.

    ``proposals`` ``[N, 4]``, ``gt_boxes`` ``[M, 4]`` (x1y1x2y2). With no GT box, IoU is 0 and the
    matched box is undefined (NaN).
    """
    proposals = proposals.reshape(-1, 4).float()
    gt_boxes = gt_boxes.reshape(-1, 4).float()
    if gt_boxes.numel() == 0 or proposals.numel() == 0:
        return (torch.zeros(proposals.shape[0]),
                torch.full((proposals.shape[0], 4), float("nan")))
    iou = box_iou(proposals, gt_boxes)
    best_iou, best = iou.max(dim=1)
    return best_iou, gt_boxes[best]


def l1_offsets(proposals: torch.Tensor, matched_gt: torch.Tensor) -> torch.Tensor:
    """``[N, 4]`` absolute box-coder offsets |dx|, |dy|, |dw|, |dh| of ``matched_gt`` w.r.t. the proposals."""
    if proposals.numel() == 0:
        return torch.zeros((0, 4))
    return _CODER.encode_single(matched_gt.float(), proposals.float()).abs()


@dataclass
class ImageSamples:
    """Figure-3 samples of one image: offsets ``[k, 4]``, objectness and IoU of each sample."""

    high: torch.Tensor
    low: torch.Tensor
    high_scores: torch.Tensor
    low_scores: torch.Tensor
    high_iou: torch.Tensor
    low_iou: torch.Tensor
    k: int                       # requested per group: #GT x k_per_gt
    num_positive: int            # proposals with IoU > 0
    overlap: bool = field(default=False)   # high and low share proposals


def sample_offsets(proposals: torch.Tensor, scores: torch.Tensor, gt_boxes: torch.Tensor,
                   k_per_gt: int = 5) -> ImageSamples:
    """The paper's per-image sample: the #GT x ``k_per_gt`` highest- and lowest-objectness
    proposals among those with IoU > 0 with a GT box, with their L1 offsets (see module doc)."""
    if proposals.shape[0] != scores.shape[0]:
        raise Figure3Error(f"{proposals.shape[0]} proposals but {scores.shape[0]} scores")
    iou, matched = match_proposals(proposals, gt_boxes)
    keep = iou > 0
    props, sc, iou, matched = proposals[keep].float(), scores[keep].float(), iou[keep], matched[keep]
    k = int(gt_boxes.reshape(-1, 4).shape[0]) * k_per_gt
    order = torch.argsort(sc, descending=True, stable=True)
    n = order.numel()
    hi = order[: min(k, n)]
    lo = order[max(n - k, 0):].flip(0)     # lowest first
    offsets = l1_offsets(props, matched)
    return ImageSamples(
        high=offsets[hi], low=offsets[lo], high_scores=sc[hi], low_scores=sc[lo],
        high_iou=iou[hi], low_iou=iou[lo], k=k, num_positive=n, overlap=n < 2 * k and n > 0)


def spearman(objectness, iou) -> tuple[float, float, int]:
    """Spearman rank correlation of objectness and IoU: ``(rho, p_value, n)`` (NaN if undefined)."""
    a = np.asarray(objectness, dtype=np.float64).ravel()
    b = np.asarray(iou, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise Figure3Error(f"objectness has {a.size} values but IoU {b.size}")
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan, math.nan, int(a.size)
    res = stats.spearmanr(a, b)
    return float(res.statistic), float(res.pvalue), int(a.size)


# ----------------------------------------------------------------------------------------------
# collection over a model and a dataset


@dataclass
class ModelSamples:
    name: str                    # "RPN" | "KL-RPN"
    cell: str
    rows: pd.DataFrame           # one row per sample
    all_scores: np.ndarray       # every proposal's objectness (for Spearman)
    all_iou: np.ndarray          # every proposal's best IoU
    num_images: int
    num_overlap: int
    num_without_positive: int


def samples_frame(name: str, image_id, s: ImageSamples) -> pd.DataFrame:
    parts = []
    for group, off, sc, iou in (("high", s.high, s.high_scores, s.high_iou),
                                ("low", s.low, s.low_scores, s.low_iou)):
        if off.shape[0] == 0:
            continue
        d = pd.DataFrame(off.cpu().numpy(), columns=list(COORDS))
        d.insert(0, "rank", np.arange(off.shape[0]))
        d.insert(0, "group", group)
        d.insert(0, "image_id", image_id)
        d.insert(0, "model", name)
        d["objectness"] = sc.cpu().numpy()
        d["iou"] = iou.cpu().numpy()
        parts.append(d)
    if not parts:
        return pd.DataFrame(columns=["model", "image_id", "group", "rank", *COORDS, "objectness", "iou"])
    return pd.concat(parts, ignore_index=True)


@torch.no_grad()
def collect(model, dataset, name: str, cell: str, num_images: int = 100, k_per_gt: int = 5,
            device: str = "cpu") -> ModelSamples:
    """Run ``model.propose`` on the first ``num_images`` images of ``dataset`` and sample."""
    model.eval()
    n = min(num_images, len(dataset))
    frames, all_scores, all_iou = [], [], []
    overlap = without = 0
    for i in range(n):
        image, target = dataset[i]
        out = model.propose([image.to(device)])[0]
        boxes, scores = out["boxes"].detach().cpu(), out["scores"].detach().cpu()
        gt = target["boxes"].reshape(-1, 4).cpu()
        s = sample_offsets(boxes, scores, gt, k_per_gt)
        iou, _ = match_proposals(boxes, gt)
        all_scores.append(scores.float().numpy())
        all_iou.append(iou.numpy())
        overlap += int(s.overlap)
        without += int(s.num_positive == 0)
        frames.append(samples_frame(name, int(target.get("image_id", i)), s))
    rows = pd.concat(frames, ignore_index=True) if frames else samples_frame(name, 0, sample_offsets(
        torch.zeros((0, 4)), torch.zeros(0), torch.zeros((0, 4))))
    return ModelSamples(name, cell, rows, np.concatenate(all_scores) if all_scores else np.zeros(0),
                        np.concatenate(all_iou) if all_iou else np.zeros(0), n, overlap, without)


# ----------------------------------------------------------------------------------------------
# summaries, plot, markdown


def summary(models: list[ModelSamples]) -> pd.DataFrame:
    """Per model and coordinate: median offset of the high and low samples, and counts."""
    recs = []
    for m in models:
        for c in COORDS:
            hi = m.rows.loc[m.rows["group"] == "high", c]
            lo = m.rows.loc[m.rows["group"] == "low", c]
            recs.append({"model": m.name, "coord": c,
                         "median_high": float(hi.median()) if len(hi) else math.nan,
                         "median_low": float(lo.median()) if len(lo) else math.nan,
                         "n_high": int(len(hi)), "n_low": int(len(lo))})
    return pd.DataFrame.from_records(recs)


def plot(models: list[ModelSamples], path: str | os.PathLike, bins: int = 40) -> None:
    """Rows = models (RPN, KL-RPN), columns = x, y, w, h; density of |offset| per group,
    red = high objectness, blue = low (the paper's colours). Written atomically (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(models), len(COORDS), figsize=(3.2 * len(COORDS), 2.6 * len(models)),
                             squeeze=False)
    for j, c in enumerate(COORDS):
        # shared bins per coordinate: 0 .. 99th percentile over both models and groups
        values = np.concatenate([m.rows[c].to_numpy(dtype=float) for m in models])
        values = values[np.isfinite(values)]
        hi_edge = float(np.quantile(values, 0.99)) if values.size else 1.0
        edges = np.linspace(0.0, max(hi_edge, 1e-3), bins + 1)   # floor: degenerate (all ~0) offsets
        for i, m in enumerate(models):
            ax = axes[i][j]
            for group, colour, label in (("high", "red", "high objectness"),
                                         ("low", "blue", "low objectness")):
                v = m.rows.loc[m.rows["group"] == group, c].to_numpy(dtype=float)
                v = v[np.isfinite(v)]
                if v.size:
                    ax.hist(np.clip(v, edges[0], edges[-1]), bins=edges, density=True,
                            histtype="step", color=colour, linewidth=1.5, label=f"{label} (n={v.size})")
            ax.set_xlabel(f"|offset {c}|")
            if j == 0:
                ax.set_ylabel(f"({'ab'[i] if i < 2 else i}) {m.name}\ndensity")
            ax.set_title(f"{m.name}: {c}", fontsize=10)
            if j == len(COORDS) - 1:
                ax.legend(fontsize=7, loc="upper right")
    fig.suptitle("L1 offset from the matched GT box, high (red) vs low (blue) objectness proposals "
                 "(values above the 99th percentile are counted in the last bin)", fontsize=10)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_csv(models: list[ModelSamples], path: str | os.PathLike) -> None:
    frame = pd.concat([m.rows.assign(cell=m.cell) for m in models], ignore_index=True)
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def markdown(models: list[ModelSamples], requested_images: int, png_name: str, csv_name: str,
             profile: str | None, test_split: str) -> str:
    """figure3.md (``klrpn/templates/figure3.md.j2``): the medians of :func:`summary`, the
    Spearman correlations and the sampling notes."""
    correlations = []
    for m in models:
        pos = m.all_iou > 0
        for over, scores, iou in (("all proposals", m.all_scores, m.all_iou),
                                  ("proposals with IoU > 0", m.all_scores[pos], m.all_iou[pos])):
            rho, p, n = spearman(scores, iou)
            correlations.append({"model": m.name, "over": over, "rho": rho, "p": p, "n": n})
    return template("figure3.md.j2").render(
        models=models, medians=summary(models).to_dict("records"), correlations=correlations,
        num_images=models[0].num_images, requested_images=requested_images, test_split=test_split,
        png=png_name, csv=csv_name, profile=profile)


def write_outputs(models: list[ModelSamples], out_dir: str | os.PathLike, requested_images: int,
                  profile: str | None, test_split: str) -> dict[str, Path]:
    """figure3.png, figure3.csv, then figure3.md (last: its presence means the others are done)."""
    out = Path(out_dir)
    paths = {"png": out / "figure3.png", "csv": out / "figure3.csv", "md": out / "figure3.md"}
    plot(models, paths["png"])
    write_csv(models, paths["csv"])
    atomic_write_text(paths["md"], markdown(models, requested_images, paths["png"].name,
                                            paths["csv"].name, profile, test_split))
    return paths


def run(rpn_dir: str | os.PathLike, klrpn_dir: str | os.PathLike, out_dir: str | os.PathLike,
        num_images: int = 100, k_per_gt: int = 5, device: str = "cpu") -> dict[str, Path]:
    """Load both trained models (results/<cell>), sample on the shared test split, write outputs."""
    for name, d in (("RPN", rpn_dir), ("KL-RPN", klrpn_dir)):
        if not (Path(d) / FINAL_NAME).is_file():
            raise Figure3Error(f"{Path(d) / FINAL_NAME}: no trained model ({name}); train it first")
    from klrpn.checkpoint import load_final_model
    from klrpn.data import build_dataset

    loaded = []
    for name, d in (("RPN", rpn_dir), ("KL-RPN", klrpn_dir)):
        model, cfg = load_final_model(d, device=device)
        expected = "rpn" if name == "RPN" else "klrpn"
        if cfg["model"]["proposal"] != expected:
            raise Figure3Error(f"{d}: model.proposal is {cfg['model']['proposal']!r}, expected {expected!r} for {name}")
        loaded.append((name, model, cfg))
    (_, _, c0), (_, _, c1) = loaded
    if (c0["dataset"]["root"], c0["dataset"]["test"]) != (c1["dataset"]["root"], c1["dataset"]["test"]):
        raise Figure3Error(f"{rpn_dir} and {klrpn_dir} were configured with different test sets: "
                           f"{c0['dataset']['root']}:{c0['dataset']['test']} vs "
                           f"{c1['dataset']['root']}:{c1['dataset']['test']}")
    dataset = build_dataset(c0, "test", train=False)
    models = [collect(model, dataset, name, cfg["cell"], num_images, k_per_gt, device)
              for name, model, cfg in loaded]
    return write_outputs(models, out_dir, num_images, c0.get("profile"), c0["dataset"]["test"])
