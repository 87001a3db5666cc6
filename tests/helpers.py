"""Shared test helpers, importable as ``helpers`` from every test folder (tests/conftest.py puts
tests/ on sys.path): the repository root, one shortened smoke schedule, one metrics.json builder."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params"
PROFILE_SECTIONS = ("by_format", "by_backbone", "by_detector", "by_proposal")


# --- a shortened smoke schedule -------------------------------------------------------------------

def shorten_smoke_profile(params: Path, *, length: int, steps: list[int] | None = None,
                          warmup_iters: int | None = None, checkpoint_every: int | None = None,
                          train: dict | None = None, eval: dict | None = None,
                          rfcn_scales: list[int] | None = None) -> Path:
    """Edit ``params``/profiles/smoke.yaml in place: every cell trains ``length`` iterations (the
    per-section schedule overrides, e.g. the VGG cells' longer run, are dropped), LR steps at
    ``steps`` (default ``[length * 4 // 5]``); ``warmup_iters`` / ``checkpoint_every`` when given;
    ``train`` / ``eval`` update the ``all.train`` / ``all.eval`` sections (e.g. batch_size,
    latency_images); ``rfcn_scales`` makes the R-FCN cells multi-scale if the profile does not
    already. Returns ``params``."""
    import yaml

    path = Path(params) / "profiles" / "smoke.yaml"
    data = yaml.safe_load(path.read_text())
    schedule = {"length": length, "steps": list(steps) if steps is not None else [length * 4 // 5]}
    if warmup_iters is not None:
        schedule["warmup_iters"] = warmup_iters
    data["all"]["train"]["schedule"].update(schedule)
    if checkpoint_every is not None:
        data["all"]["train"]["checkpoint_every"] = checkpoint_every
    data["all"]["train"].update(train or {})
    data["all"].setdefault("eval", {}).update(eval or {})
    for section in PROFILE_SECTIONS:
        for override in (data.get(section) or {}).values():
            override.get("train", {}).pop("schedule", None)
    if rfcn_scales:
        rfcn = data.setdefault("by_detector", {}).setdefault("rfcn", {}).setdefault("input", {})
        if len(rfcn.get("min_size", [])) < 2:
            rfcn["min_size"] = list(rfcn_scales)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return Path(params)


def shortened_smoke_params(dst: Path, **schedule) -> Path:
    """A copy of the repository's params/ at ``dst`` with the smoke profile shortened
    (``shorten_smoke_profile``'s keywords)."""
    shutil.copytree(PARAMS, dst)
    return shorten_smoke_profile(dst, **schedule)


# --- fabricated metrics.json --------------------------------------------------------------------

SHA = "a" * 64
CELL_RE = re.compile(r"^([a-z0-9]+)-(\w+?)-(vgg16|resnet101)-(rpn|klrpn)(--[a-z0-9_]+)?$")
PROPOSAL_QUALITY = {
    "ar_curve": {"10": 20.0, "20": 30.0, "50": 35.0, "100": 40.0, "200": 45.0, "300": 45.0,
                 "500": 45.0, "1000": 45.0},
    "recall_vs_iou": {k: {f"{t / 100:.2f}": 90.0 - t / 2 for t in range(50, 100, 5)}
                      for k in ("300", "1000")},
    "score_iou": {"rho": 0.4, "rho_overlapping": None, "num_proposals": 6000,
                  "num_overlapping": 900}}


def metrics_doc(cell: str, *, profile: str = "paper", seed: int = 0, schema_version: int = 2,
                metrics: dict | None = None, proposals: dict | None = None,
                proposal_quality: dict | None = None, **over) -> dict:
    """A schema-valid metrics.json document for ``cell`` (a cell or variant id), with fixed
    made-up numbers: table 1 (COCO AP metrics) for coco cells, table 2 (VOC mAP) otherwise;
    ``schema_version`` 2 carries ``proposal_quality`` (PROPOSAL_QUALITY unless given), 1 does
    not; any other top-level key can be replaced through ``over``."""
    m = CELL_RE.match(cell)
    if not m:
        raise ValueError(f"not a cell id: {cell!r}")
    name, detector, backbone, proposal, _ = m.groups()
    table = 1 if name == "coco" else 2
    doc = {
        "schema_version": schema_version, "cell": cell, "profile": profile, "table": table,
        "detector": detector, "backbone": backbone, "proposal": proposal,
        "dataset": {"name": name,
                    "train": ["train2017"] if table == 1 else (
                        ["2007_trainval"] if name == "voc07" else ["2007_trainval", "2012_trainval"]),
                    "test": "val2017" if table == 1 else "2007_test",
                    "num_test_images": 5000 if table == 1 else 4952, "manifest_sha256": SHA},
        "metrics": metrics or ({"AP": 30.0, "AP50": 50.0, "AP75": 31.0, "APS": None, "APM": 33.0,
                                "APL": 40.0} if table == 1 else
                               {"mAP": 76.5, "per_class": {"aeroplane": 80.0}}),
        "proposals": proposals or {"AR@100": 40.0, "AR@300": 45.0, "AR@1000": 47.5},
        "params": 138_307_339, "params_M": 138.31,
        "speed": {"ms_per_image": 95.0, "device": "cpu: test"},
        "provenance": {"git_commit": "0123456789abcdef0123456789abcdef01234567", "git_dirty": False,
                       "params_hash": SHA, "seed": seed, "torch": "2.14.1", "torchvision": "0.29.1",
                       "wall_time_s": 80.5, "eval_wall_time_s": 10.0, "train_iters": 300,
                       "date": "2026-11-25T12:00:00Z", "hardware": "cpu: 2 cores",
                       "run_identity": None, "train": {}},
    }
    if schema_version >= 2:
        doc["proposal_quality"] = json.loads(json.dumps(proposal_quality or PROPOSAL_QUALITY))
    doc.update(over)
    return doc


def write_metrics(results: Path, doc: dict, seed: int | None = None) -> Path:
    """Write ``doc`` as the metrics.json of its run folder under ``results``
    (``results/<cell>``, or ``results/seed<N>/<cell>`` for seed N > 0; the seed defaults to the
    document's provenance.seed); returns the file."""
    from klrpn.layout import run_dir

    seed = doc.get("provenance", {}).get("seed", 0) if seed is None else seed
    d = run_dir(results, doc["cell"], seed)
    d.mkdir(parents=True, exist_ok=True)
    (d / "metrics.json").write_text(json.dumps(doc))
    return d / "metrics.json"


def break_three_images(root: Path) -> list[str]:
    """Delete one image, truncate one to 300 bytes, give one a wrong annotated width: their paths
    as the smoke params name them."""
    gone = root / "coco" / "train2017" / "000004800002.jpg"
    gone.unlink()
    cut = root / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000003.jpg"
    cut.write_bytes(cut.read_bytes()[:300])
    xml = root / "VOCdevkit" / "VOC2012" / "Annotations" / "2012_000001.xml"
    xml.write_text(re.sub(r"<width>\d+</width>", "<width>999</width>", xml.read_text()))
    return [str(p.relative_to(root.parent)) for p in
            (gone, cut, root / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2012_000001.jpg")]
