"""The identity of a training run: which params, data and code it was made with.

A checkpoint (or a finished ``model_final.pt``) is only resumed or reused by a run with the same
identity; :func:`klrpn.train.archive_stale_run` moves any other run aside. The identity is

- ``params_hash``: sha256 of the resolved cell configuration (:func:`klrpn.config.load_cell`);
- ``data_fingerprint``: sha256 over what the training data *is*, cheap at COCO scale: the
  training sets' annotation files (COCO ``instances_<set>.json``; VOC image-set listings and
  the XML files they list) and the markers saying how the data was made — the download markers
  ``<root>/.klrpn-downloads/<entry>.json`` (archive sha256 of each dataset archive and of the
  ImageNet weights) and the synthetic data's ``.klrpn-synth.json`` (seed, sizes, generator
  source hash). Images are not read: they only change with a new archive (a new marker) or a
  new synthetic generator (a new ``.klrpn-synth.json``);
- ``code_hash``: sha256 over the bytes of the training-relevant source files
  (:data:`TRAINING_CODE`, relative to the checkout); any byte change counts, comments included.

``id`` is the sha256 of the three. docs/training.md says what counts as training-relevant code
and why; dvc.yaml lists exactly these files as dependencies of every training stage (tested).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent

# What the trained weights depend on, besides params and data: the loop, the optimiser and
# schedule (train.py), the losses, gradient averaging (distributed.py), the networks, and how
# images and boxes reach the model (datasets, transforms, the sampler). Not here: downloading
# (download.py, manifest.tsv: covered by the download markers; check.py only reports missing
# markers), the synthetic generator
# (synthetic.py: covered by .klrpn-synth.json), checkpoint I/O, GPU claims, evaluation,
# reports, the CLI, config resolution (its result is the params hash), models/info.py (counts).
TRAINING_CODE = (
    "klrpn/train.py",
    "klrpn/losses.py",
    "klrpn/distributed.py",
    "klrpn/models/__init__.py",
    "klrpn/models/anchors.py",
    "klrpn/models/backbones.py",
    "klrpn/models/detector.py",
    "klrpn/models/roi_heads.py",
    "klrpn/models/rpn.py",
    "klrpn/data/__init__.py",
    "klrpn/data/base.py",
    "klrpn/data/coco.py",
    "klrpn/data/voc.py",
    "klrpn/data/sampler.py",
)

DOWNLOAD_MARKERS = ".klrpn-downloads"


def _sha256_file(path: Path) -> str:
    from klrpn.data.download import sha256_of

    return sha256_of(path)


def code_hash(root: Path | str = ROOT) -> str:
    """sha256 of the lines ``"<path>\\t<sha256 of its bytes>\\n"`` over :data:`TRAINING_CODE`."""
    h = hashlib.sha256()
    for rel in TRAINING_CODE:
        path = Path(root) / rel
        if not path.is_file():
            raise FileNotFoundError(f"{path}: training code file missing (klrpn.identity.TRAINING_CODE)")
        h.update(f"{rel}\t{_sha256_file(path)}\n".encode())
    return h.hexdigest()


def data_markers(cfg: dict) -> list[Path]:
    """The marker files describing the cell's training data and (if pretrained with torchvision
    weights) its ImageNet weights, those that exist: ``<dataset root parent>/.klrpn-synth.json``
    and ``.klrpn-downloads/<entry>.json`` of the dataset's manifest group; the weights' marker
    next to ``model.weights_dir``."""
    from klrpn.data.download import read_manifest
    from klrpn.data.synthetic import MARKER as SYNTH_MARKER

    data_root = Path(cfg["dataset"]["root"]).parent
    manifest = read_manifest()
    names = [e.name for e in manifest if e.group == cfg["dataset"]["format"]]
    found = [data_root / SYNTH_MARKER] + [data_root / DOWNLOAD_MARKERS / f"{n}.json" for n in names]
    m = cfg["model"]
    if m.get("pretrained") and m.get("weights_style", "torchvision") == "torchvision":
        found.append(Path(m["weights_dir"]).parent / DOWNLOAD_MARKERS / f"{m['backbone']}.json")
    return [p for p in found if p.is_file()]


def data_fingerprint(cfg: dict) -> str:
    """sha256 over the training sets' annotation files and :func:`data_markers` (each as
    ``"<kind>\\t<path>\\t<sha256>\\n"``, paths relative to their root). Pretrained cells without a
    weights marker (weights placed by hand, caffe-style weights) hash the weights file itself."""
    from klrpn.evaluate import annotation_files

    h = hashlib.sha256()
    try:
        files = annotation_files(cfg, sets=cfg["dataset"]["train"])
    except FileNotFoundError as err:
        group = cfg["dataset"]["format"]
        raise FileNotFoundError(
            f"{err}; get the data first: `klrpn data download {group} weights --root data` "
            "(then `dvc add data`), or `dvc pull data.dvc` where a team shares it") from None
    for rel, path in files:
        h.update(f"annotation\t{rel}\t{_sha256_file(path)}\n".encode())
    markers = data_markers(cfg)
    for path in markers:
        h.update(f"marker\t{path.parent.name}/{path.name}\t{_sha256_file(path)}\n".encode())
    m = cfg["model"]
    if m.get("pretrained") and not any(p.name == f"{m['backbone']}.json" for p in markers):
        from klrpn.models import weights_file   # the file of model.weights_style

        weights = Path(m["weights_dir"]) / weights_file(m)
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: ImageNet weights not found; run `klrpn data "
                                    "download weights` or set model.pretrained: false")
        h.update(f"weights\t{weights.name}\t{_sha256_file(weights)}\n".encode())
    return h.hexdigest()


def combine(params_hash: str, data: str, code: str) -> dict:
    """The identity dict of the three hashes, with their combined ``id``."""
    parts = {"params_hash": params_hash, "data_fingerprint": data, "code_hash": code}
    parts["id"] = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return parts


def run_identity(cfg: dict, code_root: Path | str = ROOT) -> dict:
    """``{"params_hash", "data_fingerprint", "code_hash", "id"}`` of training ``cfg`` now."""
    return combine(cfg["params_hash"], data_fingerprint(cfg), code_hash(code_root))


def differences(old: dict | None, new: dict) -> list[str]:
    """Which parts differ: a sublist of ``["params", "data", "code"]`` (all three when ``old``
    is missing or was written before run identities existed)."""
    old = old or {}
    return [name for name, key in (("params", "params_hash"), ("data", "data_fingerprint"),
                                   ("code", "code_hash")) if old.get(key) != new[key]]
