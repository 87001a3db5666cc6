"""GPU-hours of the paper's twelve cells from measured training throughput.

For each cell of params/cells.yaml (paper profile): images processed = epochs x training
images x 2 when flipped (the baseline's epoch: every image and its mirror), hours = images
processed / (images/s) / 3600. Images/s comes from ``bench_train.py`` JSON lines (``--results``)
whose settings match the cell's current ones (``input.pad_multiple``, ``train.cudnn_benchmark``,
``train.channels_last``, losses read late) on full-width models; a cell without a row of its own
takes the row of a cell with the same detector and backbone (marked "from ..."): the RPN and
KL-RPN heads cost the same, and all cells train at short side 600 (R-FCN: 400-800).

    python benchmarks/gpu_hours.py --results benchmarks/gpu/2026-11-27/*bench_train.jsonl
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from klrpn.config import list_cells, load_cell  # noqa: E402

# Training images per dataset (after the baseline drops images without boxes):
# COCO train2017 images with at least one box; VOC 2007 trainval; VOC 2007+2012 trainval.
TRAIN_IMAGES = {"coco": 117_266, "voc07": 5_011, "voc0712": 16_551}


def matching_rows(rows: list[dict], cfg: dict) -> list[dict]:
    want = (cfg["input"]["pad_multiple"], cfg["train"]["cudnn_benchmark"], cfg["train"]["channels_last"])
    return [r for r in rows
            if r.get("width") == 1.0 and r.get("label") and not r.get("eager_loss_read")
            and (r.get("pad_multiple"), r.get("cudnn_benchmark"), r.get("channels_last")) == want]


def table(rows: list[dict], params: str | None = None) -> list[dict]:
    cfg_of = functools.cache(lambda cell: load_cell(cell, "paper", params))  # each cell once
    out = []
    for cell in (c["id"] for c in list_cells(params)):
        cfg = cfg_of(cell)
        m, d, sched = cfg["model"], cfg["dataset"], cfg["train"]["schedule"]
        if sched["unit"] != "epoch":
            raise SystemExit(f"{cell}: schedule in {sched['unit']}s, expected epochs")
        # rows of the same detector and backbone; this cell's own first, then same dataset
        family = [r for r in matching_rows(rows, cfg)
                  if (cfg_of(r["cell"])["model"]["detector"], cfg_of(r["cell"])["model"]["backbone"])
                  == (m["detector"], m["backbone"])]
        best = max(family, default=None, key=lambda r: (
            r["cell"] == cell, cfg_of(r["cell"])["dataset"]["name"] == d["name"], r["images_per_s"]))
        source = best["cell"] if best else None
        images = sched["length"] * TRAIN_IMAGES[d["name"]] * (2 if cfg["input"]["flip"] else 1)
        ips = best["images_per_s"] if best else None
        out.append({"cell": cell, "table": cfg["table"], "epochs": sched["length"],
                    "train_images": TRAIN_IMAGES[d["name"]], "images_processed": images,
                    "images_per_s": ips, "measured_on": source,
                    "hours": None if ips is None else images / ips / 3600})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", nargs="+", required=True, help="bench_train.py JSON lines files")
    p.add_argument("--params", default=None)
    args = p.parse_args(argv)
    rows = [json.loads(line) for f in args.results for line in Path(f).read_text().splitlines()
            if line.startswith("{") and '"images_per_s"' in line]
    result = table(rows, args.params)
    print("| cell | epochs | training images | images processed | images/s (measured on) | H100-hours |")
    print("|---|---|---|---|---|---|")
    for r in result:
        src = "" if r["measured_on"] == r["cell"] else f" (from {r['measured_on']})"
        ips = "not measured" if r["images_per_s"] is None else f"{r['images_per_s']:.1f}{src}"
        hours = "?" if r["hours"] is None else f"{r['hours']:.1f}"
        print(f"| {r['cell']} | {r['epochs']} | {r['train_images']:,} | {r['images_processed'] / 1e6:.2f} M "
              f"| {ips} | {hours} |")
    for t in (1, 2):
        hours = [r["hours"] for r in result if r["table"] == t]
        total = "?" if None in hours else f"{sum(hours):.0f}"
        print(f"\nTable {t}: {total} H100-hours", end="")
    known = [r["hours"] for r in result]
    print(f"\nAll cells: {'?' if None in known else f'{sum(known):.0f}'} H100-hours")
    return 0


if __name__ == "__main__":
    sys.exit(main())
