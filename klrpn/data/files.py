"""The annotation files a cell's datasets are read from (not the images).

Used for the run identity's data fingerprint (:mod:`klrpn.identity`) and the test set's
``manifest_sha256`` in ``metrics.json``; the datasets themselves read them in
:mod:`klrpn.data.coco` and :mod:`klrpn.data.voc`.
"""

from __future__ import annotations

from pathlib import Path

from klrpn.data.coco import coco_paths
from klrpn.data.voc import parse_image_set


def annotation_files(cfg: dict, sets=None) -> list[tuple[str, Path]]:
    """``[(path relative to dataset.root, path)]`` of the annotation files of ``sets`` (default:
    the train and test sets). COCO: ``annotations/instances_<set>.json`` (``image_info_<set>.json``
    for test sets).
    VOC: each ``VOC<year>/ImageSets/Main/<set>.txt`` and every ``Annotations/<id>.xml`` it lists."""
    d = cfg["dataset"]
    root = Path(d["root"])
    sets = list(dict.fromkeys([*d["train"], d["test"]] if sets is None else sets))
    files: dict[str, Path] = {}
    for name in sets:
        if d["format"] == "coco":
            paths = [coco_paths(root, name)[0]]
        else:
            year, image_set = parse_image_set(name)
            base = root / f"VOC{year}"
            listing = base / "ImageSets" / "Main" / f"{image_set}.txt"
            if not listing.is_file():
                raise FileNotFoundError(f"{listing}: VOC image set not found (dataset.root)")
            paths = [listing] + [base / "Annotations" / f"{s}.xml" for s in listing.read_text().split()]
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"{p}: annotation file not found (dataset.root {root})")
            files[p.relative_to(root).as_posix()] = p
    return sorted(files.items())
