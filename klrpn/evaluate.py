"""Evaluation: ``results/CELL/model_final.pt`` -> ``metrics.json`` and ``detections.json``.

:func:`evaluate_cell` runs the trained detector over the cell's test split one image at a time
(fp32), scores the detections (COCO AP suite or VOC07 mAP) and the proposals (AR@100/300/1000;
recall curves and score-IoU rank correlation, :mod:`klrpn.metrics.proposal_quality`),
counts parameters, times inference, and writes ``metrics.json`` (schema:
``klrpn/schemas/metrics.schema.json``, documented in docs/metrics-json.md) atomically.
"""

from __future__ import annotations

import hashlib
import math
import statistics
import time
from pathlib import Path

import torch

from klrpn import checkpoint as ckpt
from klrpn.atomic import atomic_write_json
from klrpn.config import recipe_of
from klrpn.data.download import sha256_of
from klrpn.data.files import annotation_files
from klrpn.layout import DETECTIONS_NAME, METRICS_NAME
from klrpn.metrics_schema import metrics_schema
from klrpn.provenance import git_state, package_versions, utc_now

SCHEMA_VERSION = 2   # 2 added proposal_quality (issue 10); the schema still accepts version 1


# --- dataset manifest ---------------------------------------------------------------------------

def manifest_sha256(cfg: dict) -> str:
    """sha256 of the lines ``"<relative path>\\t<sha256 of the file>\\n"`` over
    :func:`annotation_files`, sorted by path: changes when any annotation or listing changes."""
    h = hashlib.sha256()
    for rel, path in annotation_files(cfg):
        h.update(f"{rel}\t{sha256_of(path)}\n".encode())
    return h.hexdigest()


# --- inference ----------------------------------------------------------------------------------

@torch.no_grad()
def predict(model, dataset, device: torch.device, *, num_workers: int = 0,
            progress: bool = True) -> tuple[dict, dict, list[float]]:
    """``(detections, proposals, ms)``: detections and proposals, each ``{image_id: {...}}`` on
    the CPU (detections ``{"boxes","labels","scores"}``, proposals ``{"boxes","scores"}``), both
    from one forward pass per image (``model.detect``); ``ms`` the wall time of each image's pass
    in dataset order (device synchronised before and after; data loading excluded)."""
    from tqdm import tqdm

    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=num_workers,
                                         collate_fn=lambda batch: batch[0])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)
    model.eval()
    detections, proposals, ms = {}, {}, []
    for image, target in tqdm(loader, total=len(dataset), desc="evaluate", disable=not progress,
                              mininterval=5.0):
        image = image.to(device)
        sync(device)
        start = time.perf_counter()
        (det,), (prop,) = model.detect([image])
        sync(device)
        ms.append((time.perf_counter() - start) * 1000.0)
        image_id = int(target["image_id"])
        detections[image_id] = {k: det[k].detach().cpu() for k in ("boxes", "labels", "scores")}
        proposals[image_id] = {k: prop[k].detach().cpu() for k in ("boxes", "scores")}
    return detections, proposals, ms


def coco_results(dataset, detections: dict) -> list[dict]:
    """COCO result dicts: through the dataset's category ids (COCO) or label = category (VOC)."""
    from klrpn.metrics.coco_eval import to_coco_results

    if hasattr(dataset, "to_coco_results"):
        return dataset.to_coco_results(detections)
    return to_coco_results(detections, list(range(1, dataset.num_classes + 1)))


def latency(ms: list[float], cfg: dict, device: torch.device) -> dict:
    """The speed column from the evaluation pass's own timings (no extra passes): median
    ms/image over the ``eval.latency_images`` test images after the first
    ``eval.latency_warmup`` (fewer when the test split is smaller; never the warm-up images
    unless there is nothing else)."""
    from klrpn.metrics.model_stats import device_name

    if not ms:
        raise ValueError("latency: the evaluation pass timed no image (empty test split?)")
    warmup = min(cfg["eval"]["latency_warmup"], len(ms) - 1)
    timed = ms[warmup:warmup + cfg["eval"]["latency_images"]]
    return {"ms_per_image": float(statistics.median(timed)), "device": device_name(device)}


# --- metrics.json -------------------------------------------------------------------------------

def validate_metrics(doc: dict, where: str = "metrics.json") -> None:
    """Raise ValueError naming the first key of ``doc`` that breaks the schema."""
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(metrics_schema()).iter_errors(doc),
                    key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        e = errors[0]
        key = ".".join(map(str, e.absolute_path)) or "(top level)"
        raise ValueError(f"{where}: key {key!r}: {e.message}")


def plain(x):
    """``x`` with numpy / torch scalars as Python numbers and NaN as None (JSON-safe)."""
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def metrics_document(cfg: dict, final: dict, *, dataset_info: dict, metrics: dict,
                     proposals: dict, params: int, speed: dict, eval_wall_time_s: float,
                     proposal_quality: dict) -> dict:
    m, d = cfg["model"], cfg["dataset"]
    train_prov = dict(final.get("provenance") or {})
    identity = train_prov.pop("run_identity", None) or cfg.get("run_identity")  # klrpn.identity
    overrides = {"overrides": plain(cfg["overrides"])} if cfg.get("overrides") else {}  # --set
    return {
        "schema_version": SCHEMA_VERSION,
        "cell": cfg["cell"], "profile": cfg["profile"], "table": cfg["table"],
        "detector": m["detector"], "backbone": m["backbone"], "proposal": m["proposal"],
        "dataset": {"name": d["name"], "train": list(d["train"]), "test": d["test"],
                    **dataset_info},
        "metrics": plain(metrics),
        "proposals": plain(proposals),
        "proposal_quality": plain(proposal_quality),
        "params": int(params), "params_M": round(params / 1e6, 2),
        "speed": speed,
        "recipe": recipe_of(cfg),
        "provenance": {
            **git_state(), "params_hash": cfg["params_hash"], "seed": cfg["seed"],
            **package_versions(),
            "wall_time_s": round(float(final.get("wall_time_s", 0.0)), 3),
            "eval_wall_time_s": round(eval_wall_time_s, 3),
            "train_iters": int(final["iteration"]), "date": utc_now(),
            "hardware": train_prov.get("hardware", "unknown"),
            "run_identity": identity,
            "imagenet_weights": imagenet_weights_of(cfg),
            **overrides,
            "train": plain(train_prov),
        },
    }


def imagenet_weights_of(cfg: dict) -> dict:
    """Which ImageNet weights style (and file) the cell starts from; file None without
    pretraining (model.pretrained false, e.g. the smoke profile)."""
    from klrpn.models import weights_file

    m = cfg["model"]
    style = m.get("weights_style", "torchvision")
    return {"style": style, "file": weights_file(m) if m["pretrained"] else None}


METRIC_OF_FORMAT = {"coco": "coco", "voc": "voc07"}


def check_metric(cfg: dict) -> None:
    """``eval.metric`` must be the one the dataset's evaluator computes (COCO AP suite for COCO
    files, VOC07 mAP for VOCdevkit); a clear error otherwise."""
    fmt, metric = cfg["dataset"]["format"], cfg["eval"]["metric"]
    if METRIC_OF_FORMAT.get(fmt) != metric:
        raise ValueError(f"{cfg['cell']}: eval.metric {metric!r} does not fit dataset.format "
                         f"{fmt!r} (expected {METRIC_OF_FORMAT.get(fmt)!r})")


def eval_device(cfg: dict, device: str | None):
    """``(torch.device, claim or None)``: ``device`` if given, else one claimed GPU when the
    cell trains on GPUs and one is present, else the CPU."""
    from klrpn import gpu

    if device is not None:
        return torch.device(device), None
    if cfg["train"]["gpus"] > 0 and torch.cuda.is_available():
        claim = gpu.acquire(1)
        return torch.device(f"cuda:{claim.ids[0]}"), claim
    return torch.device("cpu"), None


def evaluate_cell(cell_id: str, profile: str = "paper", out_dir: Path | str | None = None, *,
                  params_dir=None, device: str | None = None, progress: bool = True,
                  seed: int | None = None, overrides=None, log=print) -> dict:
    """Evaluate the trained cell in ``out_dir`` (default ``results/CELL``, or
    ``klrpn.layout.run_dir("results", CELL, seed, overrides)`` with ``seed`` / ``overrides``
    (``--set`` items), which override the params as in training); write and return its metrics
    document."""
    from klrpn.config import load_cell
    from klrpn.layout import run_dir
    from klrpn.data import build_dataset
    from klrpn.metrics.model_stats import count_parameters
    from klrpn.metrics.proposal_quality import coco_gt_of, headline_recall, proposal_quality
    from klrpn.models import build_model

    start = time.perf_counter()
    cfg_now = load_cell(cell_id, profile, params_dir, seed=seed, overrides=overrides)
    out_dir = Path(out_dir or run_dir("results", cell_id, seed or 0, cfg_now["overrides"]))
    final = ckpt.load_final(out_dir)
    cfg = final["cfg"]
    if cfg.get("params_hash") != cfg_now["params_hash"]:
        raise ckpt.CheckpointError(
            f"{out_dir / ckpt.FINAL_NAME} was trained with params hash {cfg.get('params_hash')!r} "
            f"but {cell_id} ({profile}) now resolves to {cfg_now['params_hash']!r}: retrain it")
    check_metric(cfg)
    dev, claim = eval_device(cfg, device)
    try:
        model = build_model(cfg, load_pretrained=False)
        model.load_state_dict(final["model"])
        model.to(dev).eval()
        dataset = build_dataset(cfg, "test", train=False)
        log(f"{cell_id}: evaluating {len(dataset)} {cfg['dataset']['test']} images on {dev}")
        detections, proposals, ms = predict(model, dataset, dev,
                                            num_workers=cfg["train"]["num_workers"],
                                            progress=progress)
        metrics = dataset.evaluate(detections)
        quality = proposal_quality(coco_gt_of(dataset), proposals)
        recall = headline_recall(quality)  # AR@100/300/1000, from the same COCOeval run
        results = coco_results(dataset, detections)
        atomic_write_json(out_dir / DETECTIONS_NAME, results)
        if cfg["dataset"]["format"] == "coco":
            from klrpn.metrics.coco_eval import results_filename
            name = results_filename(cell_id.replace("_", "-"), cfg["dataset"]["test"])
            atomic_write_json(out_dir / name, results)
        speed = latency(ms, cfg, dev)
        params = count_parameters(model)
    finally:
        if claim is not None:
            claim.release()
    doc = metrics_document(
        cfg, final, metrics=metrics, proposals=recall, proposal_quality=quality, params=params,
        speed=speed,
        dataset_info={"num_test_images": len(dataset), "manifest_sha256": manifest_sha256(cfg)},
        eval_wall_time_s=time.perf_counter() - start)
    metrics_path = out_dir / METRICS_NAME
    validate_metrics(doc, str(metrics_path))
    atomic_write_json(metrics_path, doc)
    log(f"wrote {metrics_path}: {summary(doc)}")
    return doc


def summary(doc: dict) -> str:
    m = doc["metrics"]
    head = f"AP {m['AP']}" if "AP" in m else f"mAP {m['mAP']}"
    return (f"{head}, AR@300 {doc['proposals']['AR@300']}, {doc['params_M']} M params, "
            f"{doc['speed']['ms_per_image']:.1f} ms/image on {doc['speed']['device']}")
