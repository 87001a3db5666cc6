"""COCO box evaluation time, pycocotools vs faster-coco-eval, on a val2017-sized result set.

Ground truth: 5000 images, 80 categories, 36781 boxes (val2017's counts) with random sizes
spanning small/medium/large; detections: jittered copies of the boxes plus random false
positives, ``--dets`` per image. Both backends run through klrpn.metrics.coco_eval
(loadRes + evaluate + accumulate + summarize); the stats must be identical.

    .venv/bin/python benchmarks/bench_coco_eval.py [--dets 100]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time

import numpy as np
from pycocotools.coco import COCO

from klrpn.metrics.coco_eval import STAT_KEYS, run_cocoeval


def make_gt(rng, n_images=5000, n_boxes=36781, n_cats=80) -> COCO:
    images = [{"id": i + 1, "width": 640, "height": 480} for i in range(n_images)]
    owner = np.sort(rng.integers(1, n_images + 1, n_boxes))
    side = np.exp(rng.uniform(np.log(8), np.log(400), (n_boxes, 2)))
    xy = rng.uniform(0, 1, (n_boxes, 2)) * (np.array([640, 480]) - side).clip(1)
    anns = [{"id": k + 1, "image_id": int(owner[k]), "category_id": int(rng.integers(1, n_cats + 1)),
             "bbox": [*map(float, xy[k]), *map(float, side[k])], "area": float(side[k].prod()),
             "iscrowd": int(rng.random() < 0.01)} for k in range(n_boxes)]
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns,
                    "categories": [{"id": c, "name": str(c)} for c in range(1, n_cats + 1)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def make_dets(rng, gt: COCO, per_image: int) -> list[dict]:
    dets = []
    for image_id in gt.getImgIds():
        anns = gt.imgToAnns[image_id]
        for k in range(per_image):
            if k < 2 * len(anns):  # two noisy copies of each box
                a = anns[k // 2]
                x, y, w, h = a["bbox"]
                dx, dy, dw, dh = rng.normal(0, 0.1, 4) * [w, h, w, h]
                x, y, w, h = x + dx, y + dy, w + dw, h + dh
                cat, score = a["category_id"], rng.uniform(0.3, 1.0)
            else:  # false positives
                w, h = rng.uniform(10, 300, 2)
                x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
                cat, score = int(rng.integers(1, 81)), rng.uniform(0.0, 0.6)
            dets.append({"image_id": image_id, "category_id": int(cat),
                         "bbox": [float(x), float(y), float(abs(w)), float(abs(h))],
                         "score": float(score)})
    return dets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dets", type=int, default=100, help="detections per image")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    gt = make_gt(rng)
    dets = make_dets(rng, gt, args.dets)
    print(f"ground truth: {len(gt.imgs)} images, {len(gt.anns)} boxes; detections: {len(dets)}")
    stats, seconds = {}, {}
    for backend in ("pycocotools", "faster_coco_eval"):
        start = time.perf_counter()
        stats[backend] = run_cocoeval(gt, dets, backend=backend)
        seconds[backend] = time.perf_counter() - start
        print(f"{backend:17s} {seconds[backend]:8.2f} s  " + " ".join(
            f"{k}={100 * v:.4f}" for k, v in zip(STAT_KEYS, stats[backend][:6])))
    diff = np.abs(stats["pycocotools"] - stats["faster_coco_eval"]).max()
    print(f"speed-up: {seconds['pycocotools'] / seconds['faster_coco_eval']:.2f}x; "
          f"max |stat difference| over all 12 stats: {diff:.3g}")


if __name__ == "__main__":
    main()
