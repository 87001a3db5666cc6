"""Is the data a profile's cells read there before anything trains? ``klrpn data check``.

The DVC pipeline's first stage (``data-check`` in dvc.yaml, an upstream of every training stage)
runs it so that the paper variant stops at once, with a message saying what to download, when
``data/`` holds no datasets; DVC's own check would otherwise name a missing ``data`` dependency
and nothing else.

What a cell needs is what the Snakemake workflow asks for (``data_inputs`` in
workflow/rules/common.smk uses :func:`download_entries`): for a downloaded dataset the download
markers ``<root>/.klrpn-downloads/<entry>.json`` of its manifest group (``klrpn data download``
writes a marker last, after verifying and unpacking) and, for a pretrained backbone, the marker of
its ImageNet weights. The smoke profile reads the synthetic tree that ``klrpn data synth`` (DVC
stage / Snakemake job ``synth``) makes: it needs no download.
"""

from __future__ import annotations

import os
from pathlib import Path

from klrpn.atomic import atomic_write_json
from klrpn.config import list_cells, load_cell
from klrpn.data.download import read_manifest
from klrpn.layout import download_marker

SYNTHETIC_PROFILES = ("smoke",)  # profiles whose params point every dataset at `klrpn data synth`


class DataMissingError(RuntimeError):
    """Data that a profile's cells read has not been downloaded (or pulled)."""


def download_entries(cfg: dict) -> list[str]:
    """Manifest entries a resolved cell configuration reads: its dataset's group and, if
    pretrained, its backbone's ImageNet weights (last)."""
    manifest = read_manifest()
    names = [e.name for e in manifest if e.group == cfg["dataset"]["format"]]
    if cfg["model"]["pretrained"]:
        backbone = cfg["model"]["backbone"]
        if backbone not in {e.name for e in manifest}:
            raise ValueError(f"model.backbone {backbone!r}: no ImageNet weights of that name in the "
                             "download manifest (klrpn/data/manifest.tsv)")
        names.append(backbone)
    return names


def needed_markers(cfg: dict) -> list[Path]:
    """The download markers of :func:`download_entries`: under the dataset root's parent for the
    dataset, under ``model.weights_dir``'s parent for the weights (where ``klrpn data download
    --root`` writes them)."""
    names = download_entries(cfg)
    roots = [Path(cfg["dataset"]["root"]).parent] * len(names)
    if cfg["model"]["pretrained"]:
        roots[-1] = Path(cfg["model"]["weights_dir"]).parent
    return [download_marker(root, name) for root, name in zip(roots, names)]


def check(profile: str, params_dir: str | os.PathLike | None = None) -> dict:
    """``{"profile", "synthetic", "cells": {cell: [marker, ...]}}`` for every cell of
    ``cells.yaml``; raises :class:`DataMissingError` naming each missing marker and the command
    that downloads it."""
    synthetic = profile in SYNTHETIC_PROFILES
    cells: dict[str, list[str]] = {}
    missing: dict[Path, list[str]] = {}
    for cell in list_cells(params_dir):
        cfg = load_cell(cell["id"], profile, params_dir)
        markers = [] if synthetic else needed_markers(cfg)
        cells[cell["id"]] = [str(m) for m in markers]
        for m in markers:
            if not m.is_file():
                missing.setdefault(m, []).append(cell["id"])
    if missing:
        raise DataMissingError(_missing_message(profile, missing))
    return {"profile": profile, "synthetic": synthetic, "cells": cells}


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
    """Write ``report`` as JSON to ``out`` atomically (a temporary name, then a rename)."""
    atomic_write_json(out, report, sort_keys=True)
