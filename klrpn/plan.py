"""The plan before the spend (``klrpn plan``): which runs would train, for how long, on how much
disk, and which are already complete.

For each cell of ``params/cells.yaml`` (and each seed asked for), :func:`make_plan` gives

- **training images**: the paper profile's datasets as training builds them (images without
  boxes left out), :data:`TRAIN_IMAGES`; None for other data (the smoke profile's synthetic
  sets), whose schedules are in iterations;
- **iterations**: the training loop's own count for the cell's global batch
  (:func:`klrpn.train.iters_per_epoch`, :func:`klrpn.train.schedule_in_iters`);
- **GPU-hours** (:func:`estimate_cells`, which ``benchmarks/gpu_hours.py`` prints too):
  iterations x ``train.batch_size`` images / the images/s of the measurement that stands for the
  cell (:func:`klrpn.throughput.best_for`) / 3600; None ("not measured") without one;
- **GPUs** and **wall hours**: :func:`klrpn.gpu.gpus_to_use` of the cell on ``gpus`` GPUs (as
  ``klrpn train`` decides; default the cell's ``train.gpus``), GPU-hours / GPUs;
- **disk**: the tensors of the checkpoints a finished run keeps (:data:`klrpn.checkpoint.KEEP_LAST`
  of them: model, optimiser state and per-process RNG states) and of ``model_final.pt``
  (:func:`klrpn.cost.checkpoint_sizes`), and the results (:func:`results_bytes`);
- **status** (:func:`run_status`): the run folder (:func:`klrpn.layout.run_dir`) holds a
  ``model_final.pt`` of this run identity (``complete``: what makes ``klrpn train`` answer
  "training already complete"), checkpoints of it (``partial``), a run of another identity
  (``stale``), nothing (``to train``), or the identity cannot be computed (``unknown``).

Every number but the iterations is an estimate; :func:`format_plan` says so and names the
measurement behind each row.
"""

from __future__ import annotations

from pathlib import Path

from klrpn import checkpoint as ckpt
from klrpn import throughput as tp
from klrpn.config import list_cells, load_cell
from klrpn.cost import checkpoint_sizes
from klrpn.gpu import gpus_to_use
from klrpn.layout import FINAL_NAME, run_dir

# Training images of the paper profile's datasets, as training builds them (dataset.drop_empty_train:
# images without boxes are left out, as the baseline's filter_roidb): COCO train2017 images with at
# least one box; VOC 2007 trainval; VOC 2007+2012 trainval. A flipped epoch holds each twice.
TRAIN_IMAGES = {"coco": 117_266, "voc07": 5_011, "voc0712": 16_551}
# Test images of the paper profile's test sets: COCO val2017, VOC 2007 test.
TEST_IMAGES = {"val2017": 5_000, "2007_test": 4_952}
# Results of a run besides its checkpoints, per unit, as klrpn writes them (measured on smoke runs):
BYTES_PER_DETECTION = 215        # detections.json: indented JSON, float32 values written in full
TRAIN_LOG_BYTES_PER_ITERATION = 130   # train_log.csv: 105 (KL-RPN) to 128 (RPN) bytes a row
METRICS_BYTES = 8_000            # metrics.json (about 5 kB)
STATUSES = ("complete", "partial", "stale", "to train", "unknown")


class PlanError(ValueError):
    """The plan cannot be made (bad --gpus, unusable throughput file); the message says why."""


# --- time ----------------------------------------------------------------------------------------

def training_images(cfg: dict, paper_cfg: dict) -> int | None:
    """The training images of ``cfg``'s dataset when it is the paper profile's (same name, root
    and training sets as ``paper_cfg``, the same cell in the paper profile), else None."""
    keys = ("name", "root", "train", "drop_empty_train")
    d, p = cfg["dataset"], paper_cfg["dataset"]
    if any(d[k] != p[k] for k in keys):
        return None
    return TRAIN_IMAGES.get(d["name"])


def schedule_iterations(cfg: dict, images: int | None) -> int | None:
    """The loop's iterations for the cell (:mod:`klrpn.train`'s own conversion), None when the
    schedule is in epochs and the training images are unknown."""
    from klrpn.train import iters_per_epoch, schedule_in_iters

    t = cfg["train"]
    if t["schedule"]["unit"] == "epoch" and images is None:
        return None
    ipe = None if images is None else iters_per_epoch(images, t["batch_size"], bool(cfg["input"]["flip"]))
    return schedule_in_iters(t["schedule"], ipe)[0]


def run_configs(profile: str, params_dir=None, seeds=(0,)) -> list[tuple[int, dict]]:
    """``(seed, resolved config)`` of every cell and seed, seeds outermost (as the pipelines run
    them); seed 0 keeps the params' own seed, as ``klrpn train`` without ``--seed``."""
    cells = list_cells(params_dir)
    return [(s, load_cell(c["id"], profile, params_dir, seed=None if s == 0 else s))
            for s in seeds for c in cells]


def estimate_cells(profile: str = "paper", params_dir=None, measurements: list[dict] | None = None,
                   *, seeds=(0,), configs: list[tuple[int, dict]] | None = None) -> list[dict]:
    """Per run: cell, table, seed, schedule, training images, iterations, images processed, the
    measurement used and its images/s, GPU-hours (None when not measured). ``measurements``:
    :func:`klrpn.throughput.measurements_for`'s (default: the packaged H100 ones)."""
    if measurements is None:
        measurements = tp.measurements_for(tp.DEFAULT_GPU_MODEL)[0]
    cfg_of = tp.config_loader(params_dir)
    out = []
    for seed, cfg in configs if configs is not None else run_configs(profile, params_dir, seeds):
        sched, batch = cfg["train"]["schedule"], cfg["train"]["batch_size"]
        images = training_images(cfg, cfg_of(cfg["cell"], "paper"))
        iterations = schedule_iterations(cfg, images)
        processed = None if iterations is None else iterations * batch
        best = tp.best_for(cfg, measurements, cfg_of)
        ips = best["images_per_s"] if best else None
        out.append({
            "cell": cfg["cell"], "table": cfg["table"], "seed": seed,
            "schedule_unit": sched["unit"], "schedule_length": sched["length"],
            "epochs": sched["length"] if sched["unit"] == "epoch" else None,
            "train_images": images, "iterations": iterations, "batch_size": batch,
            "images_processed": processed, "measurement": best, "images_per_s": ips,
            "gpu_hours": None if ips is None or processed is None else processed / ips / 3600,
        })
    return out


# --- disk ----------------------------------------------------------------------------------------

def checkpoints_written(iterations: int, every: int) -> int:
    """Periodic checkpoints an uninterrupted run writes: every ``every`` iterations and at the
    last one (:func:`klrpn.train.train_loop`)."""
    return iterations // every + (1 if iterations % every else 0)


def results_bytes(cfg: dict, iterations: int | None, test_images: int | None) -> int | None:
    """About the bytes of a run's results besides its checkpoints: ``train_log.csv``, at most
    ``model.roi.detections_per_img`` detections per test image in ``detections.json`` (COCO
    cells write them twice: also in test-dev format) and ``metrics.json``; None when the test
    set's size is unknown. TensorBoard events (when tensorboard is installed) are not counted."""
    if iterations is None or test_images is None:
        return None
    copies = 2 if cfg["dataset"]["format"] == "coco" else 1
    detections = test_images * cfg["model"]["roi"]["detections_per_img"] * BYTES_PER_DETECTION
    return iterations * TRAIN_LOG_BYTES_PER_ITERATION + copies * detections + METRICS_BYTES


# --- status --------------------------------------------------------------------------------------

def run_status(out_dir: Path, cfg: dict) -> tuple[str, str, int]:
    """``(status, detail, iterations done)`` of the run folder for ``cfg``, decided as ``klrpn
    train`` decides (:func:`klrpn.runs.check_same_run`, :func:`klrpn.runs.already_trained`): one of
    :data:`STATUSES`. The run identity (:func:`klrpn.identity.run_identity`: it reads the data's
    annotation files) is computed only when the folder holds a model or checkpoints."""
    from klrpn.identity import run_identity
    from klrpn.runs import already_trained, check_same_run

    out_dir = Path(out_dir)
    found = ckpt.list_checkpoints(out_dir)
    if not (out_dir / FINAL_NAME).is_file() and not found:
        return "to train", "", 0
    try:
        cfg = {**cfg, "run_identity": run_identity(cfg)}
    except (FileNotFoundError, OSError) as err:
        return "unknown", f"cannot compute its run identity: {err}", 0
    try:
        check_same_run(out_dir, cfg["run_identity"])
        if already_trained(out_dir, cfg, log=lambda *a, **k: None):
            return "complete", f"{out_dir / FINAL_NAME} is of this run", 0
    except ckpt.CheckpointError as err:
        return "stale", (f"{err}. The pipelines (--restart-on-params-change) move it aside and "
                         "train afresh"), 0
    done = found[-1][0]
    return "partial", f"{found[-1][1]}: resumes at iteration {done}", done


# --- the plan ------------------------------------------------------------------------------------

def make_plan(profile: str = "paper", *, results: str | Path = "results", params_dir=None,
              gpus: int | None = None, gpu_model: str = tp.DEFAULT_GPU_MODEL,
              throughput: list[str] | None = None, seeds=(0,)) -> dict:
    """The plan of every cell and seed: :func:`estimate_cells`' rows with status, GPUs, wall
    hours and disk, the measurements used, totals. ``throughput``: bench_train.py JSON lines
    files to use instead of the packaged measurements; ``gpu_model`` selects those of one GPU
    (:class:`klrpn.throughput.ThroughputError` when there are none); ``gpus``: the GPUs a cell
    may train on (default: its ``train.gpus``)."""
    if gpus is not None and gpus < 1:
        raise PlanError(f"--gpus {gpus}: expected at least 1")
    measurements, source = tp.measurements_for(gpu_model, throughput)
    configs = run_configs(profile, params_dir, seeds)
    rows = estimate_cells(profile, params_dir, measurements, configs=configs)
    used: list[dict] = []
    for row, (seed, cfg) in zip(rows, configs):
        t = cfg["train"]
        out_dir = run_dir(results, cfg["cell"], seed)
        row["run_dir"] = str(out_dir)
        row["status"], row["detail"], done = run_status(out_dir, cfg)
        if row["measurement"] is not None:
            if row["measurement"] not in used:
                used.append(row["measurement"])
            row["measurement_index"] = used.index(row["measurement"]) + 1
        else:
            row["measurement_index"] = None
        if row["status"] == "complete":
            row["gpu_hours_to_train"] = 0.0
        elif row["gpu_hours"] is None:
            row["gpu_hours_to_train"] = None
        else:
            row["gpu_hours_to_train"] = row["gpu_hours"] * (1.0 - done / row["iterations"])
        row["on_cpu"] = t["gpus"] == 0
        row["gpus"], row["gpus_error"] = _gpus(cfg, gpus)
        row["wall_hours"] = None if row["gpu_hours"] is None or not row["gpus"] else \
            row["gpu_hours"] / row["gpus"]
        row["checkpoint_bytes"], row["final_bytes"] = checkpoint_sizes(cfg, row["gpus"] or 1)
        row["checkpoints_kept"] = None if row["iterations"] is None else \
            min(ckpt.KEEP_LAST, checkpoints_written(row["iterations"], t["checkpoint_every"]))
        row["train_disk_bytes"] = None if row["checkpoints_kept"] is None else \
            row["checkpoints_kept"] * row["checkpoint_bytes"] + row["final_bytes"]
        test = TEST_IMAGES.get(cfg["dataset"]["test"]) if row["train_images"] is not None else None
        row["test_images"] = test
        row["results_bytes"] = results_bytes(cfg, row["iterations"], test)
    return {"profile": profile, "results": str(results), "gpu_model": gpu_model, "gpus": gpus,
            "throughput_source": source, "measurements": used, "cells": rows,
            "total": _totals(rows)}


def _gpus(cfg: dict, gpus: int | None) -> tuple[int | None, str]:
    """``(GPUs the cell trains on, "")``; ``(None, "")`` on the CPU (``train.gpus`` 0) and
    ``(None, why)`` when its global batch does not split over the GPUs."""
    wanted = cfg["train"]["gpus"]
    if wanted == 0:
        return None, ""
    try:
        return gpus_to_use(cfg, wanted if gpus is None else gpus, log=lambda *a: None), ""
    except ValueError as err:
        return None, f"{cfg['cell']}: {err}"


def _sum(values):
    values = list(values)
    return None if not values or any(v is None for v in values) else sum(values)


def _totals(rows: list[dict]) -> dict:
    todo = [r for r in rows if r["status"] != "complete"]
    return {
        "runs": len(rows), "complete": len(rows) - len(todo),
        "by_status": {s: sum(r["status"] == s for r in rows) for s in STATUSES},
        "not_measured": [r["cell"] for r in rows if r["gpu_hours"] is None],
        "images_processed": _sum(r["images_processed"] for r in rows),
        "gpu_hours": _sum(r["gpu_hours"] for r in rows),
        "gpu_hours_to_train": _sum(r["gpu_hours_to_train"] for r in todo) if todo else 0.0,
        "gpu_hours_by_table": {t: _sum(r["gpu_hours"] for r in rows if r["table"] == t)
                               for t in sorted({r["table"] for r in rows})},
        "wall_hours": _sum(r["wall_hours"] for r in rows),
        "train_disk_bytes": _sum(r["train_disk_bytes"] for r in rows),
        "results_bytes": _sum(r["results_bytes"] for r in rows),
    }


# --- text ----------------------------------------------------------------------------------------

def hours_text(hours: float | None) -> str:
    """GPU-hours as printed by ``klrpn plan`` and ``benchmarks/gpu_hours.py``."""
    return "not measured" if hours is None else f"{hours:.1f}"


def bytes_text(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _int(n) -> str:
    return "?" if n is None else f"{n:,}"


def format_plan(plan: dict) -> str:
    """The plan as markdown: one row per run, the total, the measurements, what is estimated."""
    rows, total, gpu = plan["cells"], plan["total"], plan["gpu_model"]
    seeds = any(r["seed"] for r in rows)
    cells, nseeds = len({r["cell"] for r in rows}), len({r["seed"] for r in rows})
    runs = f"{cells} cells" + (f" × {nseeds} seeds = {total['runs']} runs" if nseeds > 1 else "")
    lines = [f"# klrpn plan: profile {plan['profile']}, {runs}, run folders in {plan['results']}/",
             "", f"Throughput: bench_train.py measurements on {gpu} from {plan['throughput_source']}. "
             "GPU-hours, wall hours and disk sizes are estimates, not measurements (see below).", ""]
    head = ["cell"] + (["seed"] if seeds else []) + [
        "status", "training images", "schedule", "iterations × batch", "images/s [measurement]",
        f"{gpu} GPU-hours", "GPUs", "wall hours", "checkpoints + model", "results"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        schedule = (f"{r['schedule_length']} epochs" if r["schedule_unit"] == "epoch"
                    else f"{r['schedule_length']} iterations")
        ips = "not measured" if r["images_per_s"] is None else \
            f"{r['images_per_s']:.1f} [{r['measurement_index']}]"
        status = r["status"] + (f" ({r['gpu_hours_to_train']:.1f} h left)"
                                if r["status"] == "partial" and r["gpu_hours_to_train"] is not None else "")
        kept = "?" if r["checkpoints_kept"] is None else \
            f"{bytes_text(r['train_disk_bytes'])} ({r['checkpoints_kept']} × {bytes_text(r['checkpoint_bytes'])} + {bytes_text(r['final_bytes'])})"
        cells = [r["cell"]] + ([str(r["seed"])] if seeds else []) + [
            status, "—" if r["train_images"] is None else _int(r["train_images"]), schedule,
            f"{_int(r['iterations'])} × {r['batch_size']}", ips, hours_text(r["gpu_hours"]),
            "cpu" if r["on_cpu"] else ("?" if r["gpus"] is None else str(r["gpus"])),
            "—" if r["wall_hours"] is None else f"{r['wall_hours']:.1f}", kept,
            bytes_text(r["results_bytes"])]
        lines.append("| " + " | ".join(cells) + " |")
    unmeasured = len(total["not_measured"])
    total_hours = hours_text(total["gpu_hours"]) if not unmeasured else f"? ({unmeasured} not measured)"
    totals = [f"**total ({total['runs']})**"] + ([""] if seeds else []) + [
        f"{total['complete']} complete", "", "", _int(total["images_processed"]) + " images", "",
        f"**{total_hours}**", "",
        "—" if total["wall_hours"] is None else f"{total['wall_hours']:.1f}",
        bytes_text(total["train_disk_bytes"]), bytes_text(total["results_bytes"])]
    lines.append("| " + " | ".join(totals) + " |")
    by_table = ", ".join(f"Table {t}: {hours_text(h)}" for t, h in total["gpu_hours_by_table"].items())
    todo = total["runs"] - total["complete"]
    if not unmeasured:
        lines += ["", f"Total: {hours_text(total['gpu_hours'])} {gpu} GPU-hours ({by_table}), "
                  "an estimate."]
    else:
        known = sum(r["gpu_hours"] for r in rows if r["gpu_hours"] is not None)
        lines += ["", f"Total: unknown: {unmeasured} of {total['runs']} runs not measured"
                  + (f" (the measured ones: {known:.1f} {gpu} GPU-hours)." if unmeasured < len(rows)
                     else ".")]
    left = total["gpu_hours_to_train"]
    lines += [f"Still to train: {todo} of {total['runs']} runs"
              + ("" if not todo else f", {hours_text(left)}" + (f" {gpu} GPU-hours" if left is not None else ""))
              + f"; {total['complete']} complete.", ""]
    if plan["measurements"]:
        lines.append("Measurements used (images/s of one GPU, benchmarks/bench_train.py):")
        for i, m in enumerate(plan["measurements"], 1):
            lines.append(f"- [{i}] {m['images_per_s']} images/s, measured on {tp.describe(m)} "
                         f"({tp.where(m)})")
        lines.append("")
    if total["not_measured"]:
        lines += [f"Not measured: no {gpu} measurement with these cells' settings (profile, width, "
                  "pad_multiple, cudnn_benchmark, channels_last) of the same detector and "
                  "backbone: " + ("every cell" if unmeasured == len(rows) else
                                  ", ".join(dict.fromkeys(total["not_measured"])))
                  + ". Measure one with "
                  "benchmarks/bench_train.py and pass it with --throughput FILE.", ""]
    notes = [f"- {r['cell']}" + (f" seed {r['seed']}" if seeds else "") + f": {r['status']}: {r['detail']}"
             for r in rows if r["status"] in ("partial", "stale", "unknown")]
    notes += [f"- {r['gpus_error']}" for r in rows if r["gpus_error"]]
    if notes:
        lines += ["Runs:", *notes, ""]
    lines += [
        "How these are estimated:",
        "- GPU-hours = iterations × global batch (the images the loop processes) ÷ the measured "
        "images/s of one GPU ÷ 3600. The measurements are bench_train.py's short timed windows "
        "on synthetic images of the paper's sizes; real images (more boxes) and a batch per GPU "
        "other than the measured one change the rate.",
        "- Wall hours = GPU-hours ÷ the cell's GPUs, assuming linear scaling; the total runs the "
        "cells one after another.",
        f"- Checkpoints + model: the tensors of the {ckpt.KEEP_LAST} newest periodic checkpoints "
        "a finished run keeps (model, optimiser state, RNG states) and of model_final.pt; while "
        "a checkpoint is being written one more is on disk.",
        f"- Results: train_log.csv (~{TRAIN_LOG_BYTES_PER_ITERATION} bytes an iteration), at most "
        f"model.roi.detections_per_img detections per test image (~{BYTES_PER_DETECTION} bytes "
        "each; COCO cells write them twice) and metrics.json; TensorBoard events not counted; "
        "'?' where the test set is not the paper's.",
    ]
    return "\n".join(lines) + "\n"
