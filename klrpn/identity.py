"""The identity of a training run: which params, data and training code it was made with.

A checkpoint (or a finished ``model_final.pt``) is only resumed or reused by a run with the same
identity; :func:`klrpn.runs.archive_stale_run` moves any other run aside. The identity is

- ``params_hash``: sha256 of the resolved cell configuration (:func:`klrpn.config.load_cell`);
- ``data_fingerprint``: sha256 over what the training data *is*, cheap at COCO scale: the
  training sets' annotation files (COCO ``instances_<set>.json``; VOC image-set listings and
  the XML files they list) and the markers saying how the data was made (the download markers
  of each dataset archive and of the ImageNet weights, the synthetic data's marker:
  :mod:`klrpn.layout`). Images are not read: they only change with a new archive (a new marker)
  or a new synthetic generator (a new synthetic marker);
- ``code_modules``: the meaning hash (:func:`klrpn.sourcehash.meaning_hash`: the syntax tree
  without docstrings, so comments, blank lines, formatting and docstrings do not count) of each
  training-code module (:data:`klrpn.layout.TRAINING_CODE`), and ``code_hash`` over them.

``id`` is the sha256 of ``params_hash``, ``data_fingerprint`` and ``code_hash``. docs/training.md
("Run identity") says what is and is not training code, and why.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from klrpn.data.download import read_manifest, sha256_of
from klrpn.data.files import annotation_files
from klrpn.layout import SYNTH_MARKER, TRAINING_CODE, download_marker
from klrpn.sourcehash import meaning_hash

ROOT = Path(__file__).resolve().parents[1]   # the checkout whose klrpn/ is hashed


def code_modules(root: Path | str = ROOT) -> dict[str, str]:
    """``{path: meaning hash}`` over :data:`~klrpn.layout.TRAINING_CODE` (paths relative to the
    checkout ``root``)."""
    found = {}
    for rel in TRAINING_CODE:
        path = Path(root) / rel
        if not path.is_file():
            raise FileNotFoundError(f"{path}: training code file missing (klrpn.layout.TRAINING_CODE)")
        found[rel] = meaning_hash(path)
    return found


def hash_modules(modules: dict[str, str]) -> str:
    """sha256 of the lines ``"<path>\\t<meaning hash>\\n"``, in the order given."""
    h = hashlib.sha256()
    for rel, digest in modules.items():
        h.update(f"{rel}\t{digest}\n".encode())
    return h.hexdigest()


def code_hash(root: Path | str = ROOT) -> str:
    """:func:`hash_modules` of :func:`code_modules`."""
    return hash_modules(code_modules(root))


def data_markers(cfg: dict) -> list[Path]:
    """The marker files describing the cell's training data and (if pretrained with torchvision
    weights) its ImageNet weights, those that exist: the synthetic marker beside the dataset
    root and the download markers of the dataset's manifest group; the weights' marker next to
    ``model.weights_dir``."""
    data_root = Path(cfg["dataset"]["root"]).parent
    names = [e.name for e in read_manifest() if e.group == cfg["dataset"]["format"]]
    found = [data_root / SYNTH_MARKER] + [download_marker(data_root, n) for n in names]
    m = cfg["model"]
    if m.get("pretrained") and m.get("weights_style", "torchvision") == "torchvision":
        found.append(download_marker(Path(m["weights_dir"]).parent, m["backbone"]))
    return [p for p in found if p.is_file()]


def data_fingerprint(cfg: dict) -> str:
    """sha256 over the training sets' annotation files and :func:`data_markers` (each as
    ``"<kind>\\t<path>\\t<sha256>\\n"``, paths relative to their root). Pretrained cells without a
    weights marker (weights placed by hand, caffe-style weights) hash the weights file itself."""
    h = hashlib.sha256()
    try:
        files = annotation_files(cfg, sets=cfg["dataset"]["train"])
    except FileNotFoundError as err:
        group = cfg["dataset"]["format"]
        raise FileNotFoundError(
            f"{err}; get the data first: `klrpn data download {group} weights --root data` "
            "(then `dvc add data`), or `dvc pull data.dvc` where a team shares it") from None
    for rel, path in files:
        h.update(f"annotation\t{rel}\t{sha256_of(path)}\n".encode())
    markers = data_markers(cfg)
    for path in markers:
        h.update(f"marker\t{path.parent.name}/{path.name}\t{sha256_of(path)}\n".encode())
    m = cfg["model"]
    if m.get("pretrained") and not any(p.name == f"{m['backbone']}.json" for p in markers):
        from klrpn.models import weights_file   # the file of model.weights_style

        weights = Path(m["weights_dir"]) / weights_file(m)
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: ImageNet weights not found; run `klrpn data "
                                    "download weights` or set model.pretrained: false")
        h.update(f"weights\t{weights.name}\t{sha256_of(weights)}\n".encode())
    return h.hexdigest()


def combine(params_hash: str, data: str, code: str | dict[str, str]) -> dict:
    """The identity dict of the three parts, with their combined ``id``. ``code`` is a
    ``{path: meaning hash}`` mapping (recorded as ``code_modules``) or a ready ``code_hash``."""
    modules = dict(code) if isinstance(code, dict) else None
    parts = {"params_hash": params_hash, "data_fingerprint": data,
             "code_hash": code if modules is None else hash_modules(modules)}
    parts["id"] = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    if modules is not None:
        parts["code_modules"] = modules
    return parts


def run_identity(cfg: dict, code_root: Path | str = ROOT) -> dict:
    """``{"params_hash", "data_fingerprint", "code_hash", "code_modules", "id"}`` of training
    ``cfg`` now."""
    return combine(cfg["params_hash"], data_fingerprint(cfg), code_modules(code_root))


def differences(old: dict | None, new: dict) -> list[str]:
    """Which parts differ: a sublist of ``["params", "data", "code"]`` (all three when ``old``
    is missing or was written before run identities existed)."""
    old = old or {}
    return [name for name, key in (("params", "params_hash"), ("data", "data_fingerprint"),
                                   ("code", "code_hash")) if old.get(key) != new[key]]


def changed_modules(old: dict | None, new: dict) -> list[str] | None:
    """The training-code modules whose meaning differs between ``old`` and ``new`` (added and
    removed ones too), or None when ``old`` recorded no per-module hashes."""
    before, after = (old or {}).get("code_modules"), new.get("code_modules")
    if not isinstance(before, dict) or not isinstance(after, dict):
        return None
    return sorted(rel for rel in set(before) | set(after) if before.get(rel) != after.get(rel))


def describe_differences(old: dict | None, new: dict) -> str:
    """One phrase for a message: e.g. ``"other params, code (klrpn/models/rpn.py changed since
    this run was made)"``."""
    changed = differences(old, new)
    text = f"other {', '.join(changed)}" if changed else "the same params, data and code"
    if "code" in changed:
        modules = changed_modules(old, new)
        if modules:
            text += f" ({', '.join(modules)} changed since this run was made)"
        elif modules is None:
            text += " (the run records no per-module code hashes)"
    return text
