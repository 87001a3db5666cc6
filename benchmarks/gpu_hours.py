"""GPU-hours of the paper's twelve cells from measured training throughput.

A thin caller of the package's estimator, :func:`klrpn.plan.estimate_cells` (which ``klrpn
plan`` prints too, so the two totals are the same numbers): per cell, images processed =
iterations (the training loop's own count for the cell's global batch) x global batch, hours =
images processed / (images/s) / 3600. Images/s comes from ``bench_train.py`` JSON lines whose
settings match the cell's current ones (:mod:`klrpn.throughput`); a cell without a row of its own
takes the row of a cell with the same detector and backbone (marked "from ..."). Without
``--results`` it uses the measurements packaged with klrpn (klrpn/reference/throughput.yaml, made
from benchmarks/gpu/*/*bench_train.jsonl).

    python benchmarks/gpu_hours.py --results benchmarks/gpu/2026-11-27/*bench_train.jsonl
    python benchmarks/gpu_hours.py --write-reference     # regenerate the packaged table
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from klrpn import throughput as tp  # noqa: E402
from klrpn.plan import TRAIN_IMAGES, estimate_cells, hours_text  # noqa: E402,F401


def table(measurements: list[dict], params: str | None = None) -> list[dict]:
    """One row per cell of the paper profile: :func:`klrpn.plan.estimate_cells`."""
    rows = estimate_cells("paper", params, measurements)
    for r in rows:
        if r["schedule_unit"] != "epoch":
            raise SystemExit(f"{r['cell']}: schedule in {r['schedule_unit']}s, expected epochs")
        r["measured_on"] = r["measurement"]["cell"] if r["measurement"] else None
        r["hours"] = r["gpu_hours"]
    return rows


def write_reference() -> Path:
    """Write klrpn/reference/throughput.yaml from the committed benchmarks/gpu/*/*bench_train.jsonl."""
    files = sorted(REPO.glob(tp.BENCHMARK_GLOB))
    path = REPO / "klrpn" / tp.REFERENCE
    path.write_text(tp.reference_document(tp.read_measurements(files, root=REPO)))
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", nargs="+", default=None,
                   help="bench_train.py JSON lines files (default: the packaged measurements)")
    p.add_argument("--params", default=None)
    p.add_argument("--gpu-model", default=tp.DEFAULT_GPU_MODEL,
                   help=f"use the measurements of this GPU (default {tp.DEFAULT_GPU_MODEL})")
    p.add_argument("--write-reference", action="store_true",
                   help="regenerate klrpn/reference/throughput.yaml from benchmarks/gpu/ and exit")
    args = p.parse_args(argv)
    if args.write_reference:
        print(f"wrote {write_reference()}")
        return 0
    try:
        measurements, _ = tp.measurements_for(args.gpu_model, args.results)
    except tp.ThroughputError as err:
        print(f"gpu_hours.py: {err}", file=sys.stderr)
        return 2
    result = table(measurements, args.params)
    gpu = args.gpu_model
    print(f"| cell | epochs | training images | images processed | images/s (measured on) | {gpu}-hours |")
    print("|---|---|---|---|---|---|")
    for r in result:
        src = "" if r["measured_on"] == r["cell"] else f" (from {r['measured_on']})"
        ips = "not measured" if r["images_per_s"] is None else f"{r['images_per_s']:.1f}{src}"
        print(f"| {r['cell']} | {r['epochs']} | {r['train_images']:,} | {r['images_processed'] / 1e6:.2f} M "
              f"| {ips} | {hours_text(r['hours'])} |")
    for t in (1, 2):
        hours = [r["hours"] for r in result if r["table"] == t]
        print(f"\nTable {t}: {hours_text(None if None in hours else sum(hours))} {gpu}-hours", end="")
    known = [r["hours"] for r in result]
    print(f"\nAll cells: {hours_text(None if None in known else sum(known))} {gpu}-hours")
    return 0


if __name__ == "__main__":
    sys.exit(main())
