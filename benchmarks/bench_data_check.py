"""The pre-flight's image check (``klrpn data check``) on a COCO-sized listing.

Writes a COCO-format split of ``--images`` small JPEG files (default 123,287: COCO 2017 train +
val) with an annotation file listing each one's size, then times the two parts of the check
for that split: reading the listing as the training code does (pycocotools), and checking every
image (header size against the annotation, end marker present). Run it twice to see the warm
page cache; the first run after writing is warm too.

    .venv/bin/python benchmarks/bench_data_check.py [--images 123287] [--root DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import tempfile
import time
from pathlib import Path

from PIL import Image

from klrpn.data.check import image_problem, listed_images


def write_listing(root: Path, count: int) -> dict:
    """A COCO tree at ``root`` with ``count`` images of 64x48 in train2017 (one box each)."""
    image_dir = root / "train2017"
    image_dir.mkdir(parents=True)
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 60, 30)).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    images, annotations = [], []
    for i in range(1, count + 1):
        name = f"{i:012d}.jpg"
        (image_dir / name).write_bytes(data)
        images.append({"id": i, "file_name": name, "width": 64, "height": 48})
        annotations.append({"id": i, "image_id": i, "category_id": 1, "bbox": [4, 4, 20, 20],
                            "area": 400, "iscrowd": 0})
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(
        {"images": images, "annotations": annotations,
         "categories": [{"id": 1, "name": "thing"}]}))
    return {"dataset": {"name": "coco", "format": "coco", "root": str(root), "train": ["train2017"],
                        "test": "train2017", "classes": None, "num_classes": 1},
            "input": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=123_287)
    parser.add_argument("--root", default=None, help="where to write the listing (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.root) as tmp:
        root = Path(tmp) / "coco"
        start = time.perf_counter()
        cfg = write_listing(root, args.images)
        print(f"wrote {args.images} images in {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        entries = listed_images(cfg, "train2017")
        read = time.perf_counter() - start
        start = time.perf_counter()
        problems = [p for p in map(image_problem, entries) if p]
        checked = time.perf_counter() - start
        assert not problems, problems[:3]
        print(json.dumps({"images": len(entries), "read_listing_s": round(read, 2),
                          "check_images_s": round(checked, 2),
                          "images_per_s": round(len(entries) / checked),
                          "machine": platform.processor() or platform.machine()}))


if __name__ == "__main__":
    main()
