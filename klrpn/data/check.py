"""Is what a profile's cells read there, and sound, before anything trains? ``klrpn data check``.

The pre-flight of both pipelines: DVC's ``data-check`` stage and Snakemake's ``data_check`` job
(an upstream of every training stage / job) run it, so that missing or broken data stops a run
before any training starts. It lists every problem it finds, one line each (the file and what
to do), not just the first:

1. **Downloads.** For a downloaded dataset, the download markers
   ``<root>/.klrpn-downloads/<entry>.json`` of its manifest group (``klrpn data download`` writes a
   marker last, after verifying and unpacking) and, for a pretrained backbone, the marker of its
   ImageNet weights. The smoke profile reads the synthetic tree of ``klrpn data synth``: it needs
   no download.
2. **Images.** Every image the cells' training and test sets list exists, its header's size is
   the annotation's, and it is not cut short (a JPEG ends with its end-of-image marker, a PNG
   with its ``IEND`` chunk). Only the header and the last bytes of a file are read, so that all of
   COCO 2017 and VOC are checked in about a minute (docs/data.md).
3. **Weights.** The ImageNet weights present have the sha256 of the download manifest.
4. **Disk.** The results folder's disk has room for the checkpoints of the cells whose run
   (seed 0) has no final model yet (:func:`klrpn.cost.peak_bytes` each).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from klrpn.atomic import atomic_write_json
from klrpn.config import list_cells, load_cell
from klrpn.data.download import needed_markers, read_manifest, sha256_of
from klrpn.layout import FINAL_NAME, SYNTHETIC_PROFILES, run_dir

JPEG_END, PNG_END = b"\xff\xd9", b"IEND\xaeB`\x82"
TAIL_BYTES = 4096     # how far from a file's end its end marker may lie (trailing padding)
REDOWNLOAD = ("download it again: delete its download marker (<root>/.klrpn-downloads/) and run "
              "`klrpn data download`")
RESYNTHESIZE = "make the synthetic data again: delete its folder and run `klrpn data synth`"


class DataCheckError(RuntimeError):
    """What a profile's cells read is missing or broken; ``problems`` holds one line each."""

    def __init__(self, message: str, problems: list[str]):
        super().__init__(message)
        self.problems = problems


@dataclass(frozen=True)
class ImageEntry:
    """One image a dataset lists, with the size its annotation gives."""
    path: Path
    width: int
    height: int
    listed_in: str     # the annotation file that gives its size (COCO json, VOC xml)


# --- images -----------------------------------------------------------------------------------

def listed_images(cfg: dict, set_name: str) -> list[ImageEntry]:
    """The images one set of a cell's dataset lists (``dataset.format`` coco or voc), read the
    way the datasets read them (:mod:`klrpn.data.coco`, :mod:`klrpn.data.voc`)."""
    from klrpn.data import build_dataset

    dataset = build_dataset(cfg, set_name, train=False)
    if cfg["dataset"]["format"] == "voc":   # VOC<year>/JPEGImages/<id>.jpg: Annotations/<id>.xml
        def where(path):
            return str(path.parent.parent / "Annotations" / f"{path.stem}.xml")
    else:
        def where(path, ann_file=str(dataset.ann_file)):
            return ann_file
    return [ImageEntry(Path(r["path"]), int(r["width"]), int(r["height"]), where(Path(r["path"])))
            for r in dataset.records]


def image_problem(entry: ImageEntry, remedy: str = REDOWNLOAD) -> str | None:
    """What is wrong with one listed image (None if nothing): missing, unreadable header, a size
    other than the annotation's, or cut short; ``remedy`` ends the line. Reads the header and the
    last bytes only."""
    from PIL import Image, UnidentifiedImageError

    path = entry.path
    try:
        size = path.stat().st_size
        with Image.open(path) as im:
            width, height, kind = im.width, im.height, im.format
    except FileNotFoundError:
        return f"{path}: missing (listed in {entry.listed_in}); {remedy}"
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        return f"{path}: not a readable image ({err}); {remedy}"
    if (width, height) != (entry.width, entry.height):
        return (f"{path}: image is {width}x{height} but {entry.listed_in} says "
                f"{entry.width}x{entry.height}; {remedy}")
    end = {"JPEG": JPEG_END, "PNG": PNG_END}.get(kind)
    if end is not None:
        with open(path, "rb") as f:
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read()
        if not tail.rstrip(b"\x00\r\n ").endswith(end):
            return f"{path}: {kind} file cut short ({size} bytes, no end marker); {remedy}"
    return None


def image_problems(cfgs: list[dict], remedy: str = REDOWNLOAD) -> tuple[list[str], int]:
    """(problems, images checked) over every set the cells' datasets list (train and test),
    each (dataset root, set) and each image once."""
    problems: list[str] = []
    seen_sets: set[tuple[str, str, str]] = set()
    seen_images: set[Path] = set()
    for cfg in cfgs:
        d = cfg["dataset"]
        for set_name in dict.fromkeys([*d["train"], d["test"]]):
            key = (d["format"], str(d["root"]), set_name)
            if key in seen_sets:
                continue
            seen_sets.add(key)
            try:
                entries = listed_images(cfg, set_name)
            except (FileNotFoundError, ValueError) as err:
                problems.append(f"{err}; {remedy}")
                continue
            for entry in entries:
                if entry.path not in seen_images:
                    seen_images.add(entry.path)
                    problem = image_problem(entry, remedy)
                    if problem:
                        problems.append(problem)
    return problems, len(seen_images)


# --- weights and disk ---------------------------------------------------------------------------

def weights_problems(cfgs: list[dict]) -> list[str]:
    """The ImageNet weights files present whose sha256 is not the manifest's (the torchvision
    files; caffe-style weights have no published digest)."""
    from klrpn.models import weights_file

    manifest = {e.name: e for e in read_manifest()}
    problems, seen = [], set()
    for cfg in cfgs:
        m = cfg["model"]
        if not m["pretrained"] or m.get("weights_style", "torchvision") != "torchvision":
            continue
        path = Path(m["weights_dir"]) / weights_file(m)
        entry = manifest.get(m["backbone"])
        if path in seen or entry is None:
            continue
        seen.add(path)
        if not path.is_file():
            problems.append(f"{path}: ImageNet weights missing although their download marker is "
                            f"there; run `klrpn data download {m['backbone']} --root "
                            f"{Path(m['weights_dir']).parent}` after deleting the marker")
        elif not sha256_of(path).startswith(entry.sha256):
            problems.append(f"{path}: sha256 is not the manifest's ({entry.sha256}...); delete it and "
                            f"its marker and run `klrpn data download {m['backbone']}`")
    return problems


def disk_problem(needed: int, results: Path) -> str | None:
    """A line when the disk holding ``results`` has less than ``needed`` bytes free."""
    probe = results
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free >= needed:
        return None
    return (f"{results}: the run's checkpoints need about {needed / 2**30:.1f} GiB but its disk has "
            f"{free / 2**30:.1f} GiB free; free space or point --results elsewhere")


# --- the check ----------------------------------------------------------------------------------

def check(profile: str, params_dir: str | os.PathLike | None = None, *, files: bool = True,
          results: str | os.PathLike | None = None, dataset: str | None = None) -> dict:
    """``{"profile", "synthetic", "cells": {cell: [marker, ...]}, "images_checked",
    "disk_needed_bytes"}`` for every cell of ``cells.yaml``. Raises :class:`DataCheckError`
    listing every problem: missing download markers; then (``files``), for data that is there,
    each missing, mis-sized or truncated image and missing weights or weights of the wrong sha256;
    and too little disk under ``results`` (when given) for the cells' checkpoints. ``dataset``
    (a ``dataset.name``) checks only the cells reading that dataset."""
    synthetic = profile in SYNTHETIC_PROFILES
    cells: dict[str, list[str]] = {}
    missing: dict[Path, list[str]] = {}
    cfgs = [load_cell(cell["id"], profile, params_dir) for cell in list_cells(params_dir)]
    if dataset is not None:
        names = sorted({c["dataset"]["name"] for c in cfgs})
        cfgs = [c for c in cfgs if c["dataset"]["name"] == dataset]
        if not cfgs:
            raise ValueError(f"--dataset {dataset!r}: no cell of the {profile} profile reads it; "
                             f"the cells read {', '.join(names)}")
    for cfg in cfgs:
        markers = [] if synthetic else needed_markers(cfg)
        cells[cfg["cell"]] = [str(m) for m in markers]
        for m in markers:
            if not m.is_file():
                missing.setdefault(m, []).append(cfg["cell"])
    present = [c for c in cfgs if not any(Path(m) in missing for m in cells[c["cell"]])]
    problems: list[str] = []
    checked = 0
    if files:
        problems, checked = image_problems(present, RESYNTHESIZE if synthetic else REDOWNLOAD)
        problems += weights_problems(present)
    needed = 0
    if results is not None:
        from klrpn.cost import peak_bytes

        needed = sum(peak_bytes(c, c["train"]["gpus"]) for c in cfgs
                     if not (run_dir(results, c["cell"], 0) / FINAL_NAME).is_file())
        if (line := disk_problem(needed, Path(results))):
            problems.append(line)
    if missing or problems:
        parts = [_missing_message(profile, missing)] if missing else []
        if problems:
            parts += [f"the {profile} profile's data has {len(problems)} problem(s):",
                      *(f"  {p}" for p in problems)]
        raise DataCheckError("\n".join(parts), [*map(str, missing), *problems])
    return {"profile": profile, "synthetic": synthetic, "cells": cells,
            "images_checked": checked, "disk_needed_bytes": needed}


def recorded(report: dict) -> dict:
    """What ``--out`` records of a report: everything but the disk figure, which falls as cells
    finish (DVC's training stages depend on the file: a new figure would rerun all of them)."""
    return {k: v for k, v in report.items() if k != "disk_needed_bytes"}


def _missing_message(profile: str, missing: dict[Path, list[str]]) -> str:
    groups = {e.name: e.group for e in read_manifest()}
    by_root: dict[Path, set[str]] = {}
    for marker in missing:
        by_root.setdefault(marker.parent.parent, set()).add(groups[marker.stem])
    cells = sorted({c for cs in missing.values() for c in cs})
    lines = [f"the {profile} profile reads downloaded data that is not there "
             f"({len(missing)} of its download markers missing, {len(cells)} cells affected):"]
    lines += [f"  {m}  ({len(cs)} cell{'s' * (len(cs) > 1)}, e.g. {cs[0]})"
              for m, cs in sorted(missing.items())]
    lines.append("Download it (checksummed, resumable; what is already there is skipped):")
    lines += [f"  klrpn data download {' '.join(sorted(g))} --root {root}"
              for root, g in sorted(by_root.items())]
    lines.append("or, where a teammate has shared it (`dvc add data && dvc push`): dvc pull data.dvc")
    return "\n".join(lines)


def write_report(report: dict, out: str | os.PathLike) -> None:
    """Write :func:`recorded` of ``report`` as JSON to ``out`` atomically (a temporary name, then
    a rename)."""
    atomic_write_json(out, recorded(report), sort_keys=True)
