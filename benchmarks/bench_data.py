"""Training data loader throughput (images/s) at ~600 px, with 0 and 2 worker processes.

Writes a synthetic COCO split at scale 4.7 (short side ~530-680 px, like COCO at 600) into a
temporary folder, then times ``build_train_loader`` (JPEG decode, float conversion, flips,
collation) over ``--batches`` batches of 2 after 3 warm-up batches.

    .venv/bin/python benchmarks/bench_data.py [--images 64] [--batches 40]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

from klrpn.data import build_dataset, build_train_loader
from klrpn.data.synthetic import generate


def images_per_second(dataset, workers: int, batches: int, batch_size: int = 2) -> float:
    loader = iter(build_train_loader(dataset, batch_size=batch_size, seed=0, num_workers=workers))
    for _ in range(3):
        next(loader)
    start = time.perf_counter()
    for _ in itertools.islice(loader, batches):
        pass
    return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synthetic"
        start = time.perf_counter()
        generate(root, seed=0, sizes={"coco/train2017": args.images}, scale=4.7, log=lambda *_: None)
        print(f"wrote {args.images} images in {time.perf_counter() - start:.1f} s")
        cfg = {"dataset": {"format": "coco", "root": str(root / "coco"), "train": ["train2017"],
                           "classes": None, "num_classes": 3}, "input": {"flip": True}}
        dataset = build_dataset(cfg, "train", train=True)
        shorts = sorted(min(s) for s in dataset.sizes)
        print(f"short side: min {shorts[0]}, median {shorts[len(shorts) // 2]}, max {shorts[-1]} px")
        for workers in (0, 2):
            rate = images_per_second(dataset, workers, args.batches)
            print(f"num_workers={workers}: {rate:.1f} images/s")


if __name__ == "__main__":
    main()
