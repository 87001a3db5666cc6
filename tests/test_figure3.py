"""Figure 3 analysis on hand-made tensors (no trained model needed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from klrpn import figure3 as f3


def test_offsets_are_abs_boxcoder_encoding_of_best_gt():
    proposals = torch.tensor([[0.0, 0.0, 10.0, 10.0],      # shifted right by 2 from gt0
                              [100.0, 100.0, 120.0, 140.0]])  # gt1 is twice as wide, same centre
    gt = torch.tensor([[2.0, 0.0, 12.0, 10.0], [90.0, 100.0, 130.0, 140.0]])
    iou, matched = f3.match_proposals(proposals, gt)
    assert torch.equal(matched, gt)
    off = f3.l1_offsets(proposals, matched)
    assert off[0].tolist() == pytest.approx([0.2, 0.0, 0.0, 0.0], abs=1e-6)
    assert off[1].tolist() == pytest.approx([0.0, 0.0, math.log(2.0), 0.0], abs=1e-6)
    assert iou[0].item() == pytest.approx(80 / 120)


def test_sample_offsets_picks_k_per_gt_high_and_low_among_positive_iou():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    # 14 overlapping proposals (x shift s = 0..13 px -> |dx| = s/10) + 3 that miss the GT
    shifts = torch.arange(14.0)
    overlapping = torch.stack([shifts * 0.5, torch.zeros(14), shifts * 0.5 + 10, torch.full((14,), 10.0)], 1)
    missing = torch.tensor([[50.0, 50.0, 60.0, 60.0]]).repeat(3, 1)
    proposals = torch.cat([overlapping, missing])
    # objectness decreasing with shift; the non-overlapping ones score highest of all
    scores = torch.cat([100.0 - shifts, torch.full((3,), 1000.0)])
    s = f3.sample_offsets(proposals, scores, gt, k_per_gt=5)
    assert s.k == 5 and s.num_positive == 14 and not s.overlap
    assert s.high_scores.tolist() == [100, 99, 98, 97, 96]
    assert s.low_scores.tolist() == [87, 88, 89, 90, 91]       # lowest first
    assert s.high[:, 0].tolist() == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert bool((s.high_iou > 0).all() and (s.low_iou > 0).all())


def test_sample_offsets_overlap_flag_and_empty_image():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])  # k = 10 per group
    proposals = torch.tensor([[0.0, 0.0, 9.0, 9.0], [21.0, 21.0, 30.0, 30.0], [1.0, 1.0, 10.0, 10.0]])
    s = f3.sample_offsets(proposals, torch.tensor([0.9, 0.5, 0.1]), gt)
    assert s.k == 10 and s.num_positive == 3 and s.overlap
    assert s.high.shape == (3, 4) and s.low.shape == (3, 4)
    empty = f3.sample_offsets(torch.zeros((0, 4)), torch.zeros(0), gt)
    assert empty.high.shape[0] == 0 and empty.num_positive == 0 and not empty.overlap
    with pytest.raises(f3.Figure3Error, match="2 proposals but 1 scores"):
        f3.sample_offsets(proposals[:2], torch.zeros(1), gt)


def test_spearman():
    rho, p, n = f3.spearman([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.9])
    assert rho == pytest.approx(1.0) and n == 4
    rho, _, _ = f3.spearman([1, 2, 3, 4], [0.9, 0.3, 0.2, 0.1])
    assert rho == pytest.approx(-1.0)
    assert math.isnan(f3.spearman([1, 1, 1], [0.1, 0.2, 0.3])[0])
    with pytest.raises(f3.Figure3Error):
        f3.spearman([1, 2], [1, 2, 3])


class _FakeDetector:
    """Proposals around each GT: objectness decreases with the shift (informative) or is random."""

    def __init__(self, informative: bool, seed: int):
        self.informative = informative
        self.gen = torch.Generator().manual_seed(seed)

    def eval(self):
        return self

    def propose(self, images):
        out = []
        for img in images:
            gt = _gt_for(img)
            shift = torch.rand((gt.shape[0], 40), generator=self.gen) * 6.0         # px
            boxes = (gt[:, None, :] + shift[..., None] * torch.tensor([1.0, 1.0, 1.0, 1.0])).reshape(-1, 4)
            noise = torch.rand(boxes.shape[0], generator=self.gen)
            scores = -shift.reshape(-1) + 0.1 * noise if self.informative else noise
            out.append({"boxes": boxes, "scores": scores})
        return out


def _gt_for(img):
    k = int(img[0, 0, 0].item())
    return torch.tensor([[10.0, 10.0, 40.0, 50.0], [60.0, 20.0, 90.0, 60.0]])[: 1 + k % 2]


class _FakeDataset(list):
    pass


def _dataset(n):
    ds = _FakeDataset()
    for i in range(n):
        img = torch.full((3, 100, 100), float(i))
        ds.append((img, {"boxes": _gt_for(img), "image_id": 1000 + i}))
    return ds


def test_collect_and_outputs(tmp_path):
    ds = _dataset(7)
    models = [f3.collect(_FakeDetector(False, 0), ds, "RPN", "coco-faster_rcnn-vgg16-rpn", num_images=100),
              f3.collect(_FakeDetector(True, 1), ds, "KL-RPN", "coco-faster_rcnn-vgg16-klrpn", num_images=100)]
    assert models[0].num_images == 7
    # 7 images, #GT alternates 1,2 -> 4*1 + 3*2 = 10 GT -> 50 samples per group and model
    for m in models:
        assert (m.rows["group"] == "high").sum() == 50 and (m.rows["group"] == "low").sum() == 50
        assert len(m.all_scores) == len(m.all_iou) == 40 * 10
    s = f3.summary(models).set_index(["model", "coord"])
    # informative objectness: high-objectness proposals are closer to their GT
    assert s.loc[("KL-RPN", "x"), "median_high"] < s.loc[("KL-RPN", "x"), "median_low"]
    paths = f3.write_outputs(models, tmp_path / "reports", 100, "smoke", "val2017")
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    csv = pd.read_csv(paths["csv"])
    assert set(csv["model"]) == {"RPN", "KL-RPN"} and len(csv) == 200
    assert {"x", "y", "w", "h", "objectness", "iou", "group", "image_id", "cell"} <= set(csv.columns)
    md = paths["md"].read_text()
    assert "SMOKE RUN" in md and "first 7 images of `val2017` (the paper uses 100; this split has only 7)" in md
    rho = f3.spearman(models[1].all_scores, models[1].all_iou)[0]
    assert f"| KL-RPN | all proposals | {rho:.4f} |" in md
    med = s.loc[("KL-RPN", "w"), "median_high"]
    assert f"| KL-RPN | w | {med:.4f} |" in md
    assert not list((tmp_path / "reports").glob(".*tmp"))


def test_failed_plot_leaves_no_markdown(tmp_path, monkeypatch):
    ds = _dataset(2)
    models = [f3.collect(_FakeDetector(False, 0), ds, "RPN", "a"), f3.collect(_FakeDetector(True, 0), ds, "KL-RPN", "b")]

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(f3, "write_csv", boom)
    with pytest.raises(RuntimeError):
        f3.write_outputs(models, tmp_path, 100, "paper", "val2017")
    assert not (tmp_path / "figure3.md").exists()
    assert not list(tmp_path.glob(".*tmp"))


def test_run_rejects_missing_model(tmp_path):
    with pytest.raises(f3.Figure3Error, match="model_final.pt"):
        f3.run(tmp_path / "a", tmp_path / "b", tmp_path / "out")


def _fixed_models(empty_second: bool = False) -> list:
    """Two hand-made ModelSamples with fixed numbers (no randomness), for the markdown's bytes."""
    def model(name, cell, scale, n_images, overlap, without, rows=True):
        recs = []
        if rows:
            for image_id in (7, 9):
                for group, g in (("high", 1.0), ("low", 3.0)):
                    for rank in range(3):
                        v = scale * g * (1 + rank + image_id / 10)
                        recs.append({"model": name, "image_id": image_id, "group": group, "rank": rank,
                                     "x": v / 10, "y": v / 20, "w": v / 7, "h": v / 3,
                                     "objectness": 5.0 - rank - g, "iou": 0.9 / g - rank / 50})
        frame = pd.DataFrame.from_records(
            recs, columns=["model", "image_id", "group", "rank", *f3.COORDS, "objectness", "iou"])
        scores = np.array([0.9, 0.8, 0.75, 0.5, 0.4, 0.2, 0.1, 0.05]) * scale
        iou = np.array([0.6, 0.0, 0.8, 0.3, 0.0, 0.55, 0.1, 0.0])
        if not rows:                  # constant objectness: Spearman undefined (nan)
            scores = np.full(8, 0.5)
        return f3.ModelSamples(name, cell, frame, scores, iou, n_images, overlap, without)

    return [model("RPN", "coco-faster_rcnn-vgg16-rpn", 1.0, 2, 1, 0),
            model("KL-RPN", "coco-faster_rcnn-vgg16-klrpn", 0.5, 2, 0, 1, rows=not empty_second)]


GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.mark.parametrize("name, args", [
    ("figure3_smoke.md", dict(requested_images=100, profile="smoke", test_split="val2017")),
    ("figure3_paper.md", dict(requested_images=2, profile="paper", test_split="val2017")),
    ("figure3_none_empty.md", dict(requested_images=5, profile=None, test_split="2007_test",
                                   empty_second=True)),
])
def test_markdown_is_byte_identical_to_the_golden_file(name, args):
    """figure3.md's bytes for fixed samples (golden files written by the pre-template
    ``markdown``), so the Jinja template reproduces it exactly."""
    args = dict(args)
    models = _fixed_models(args.pop("empty_second", False))
    text = f3.markdown(models, png_name="figure3.png", csv_name="figure3.csv", **args)
    assert text == (GOLDEN / name).read_text(encoding="utf-8")
