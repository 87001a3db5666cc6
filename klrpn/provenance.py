"""Provenance: what a trained model and its metrics record about how they were made.

The git state of the checkout, the hardware, the AMP dtype and the versions of the packages
that touch the numbers (:func:`package_versions`). Nothing here changes what is learned.
"""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from klrpn import __version__ as klrpn_version

# The packages whose versions metrics.json and model_final.pt record, in the order the reports
# list them: klrpn, the training stack (torch, torchvision, numpy, pillow decodes the images),
# pycocotools (COCO / proposal evaluation) and scipy (the synthetic data's blur, Spearman's rho).
PACKAGES = ("klrpn", "torch", "torchvision", "numpy", "pillow", "pycocotools", "scipy")

if TYPE_CHECKING:     # torch is imported where it is used: the reports read PACKAGES without it
    import torch


def git_state(repo_dir: Path | str | None = None) -> dict:
    """``{"git_commit": sha or None, "git_dirty": bool or None}`` of the checkout holding the
    package. Dirty means tracked files differ from the commit (untracked files are ignored:
    data/ and results/ live in the checkout)."""
    repo_dir = Path(repo_dir or Path(__file__).resolve().parents[1])

    def git(*args):
        return subprocess.run(["git", "-C", str(repo_dir), *args], capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": dirty}


def hardware(device: torch.device, world_size: int = 1) -> str:
    """E.g. ``"4 x NVIDIA H100 80GB HBM3"`` or ``"cpu: <model>, 2 threads"``."""
    from klrpn.metrics.model_stats import device_name

    name = device_name(device)
    return f"{world_size} x {name}" if world_size > 1 else name


def package_versions(version_of=metadata.version) -> dict[str, str | None]:
    """``{package: version}`` for each of :data:`PACKAGES`: klrpn's ``__version__``, torch's and
    torchvision's ``__version__`` (which names the build, e.g. ``2.14.1+cu130``), the installed
    distribution's version (``version_of``) for the others; None for one not installed."""
    import torch
    import torchvision

    versions: dict[str, str | None] = {"klrpn": klrpn_version, "torch": str(torch.__version__),
                                       "torchvision": str(torchvision.__version__)}
    for name in PACKAGES[3:]:
        try:
            versions[name] = version_of(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance_at_train(device: torch.device, world_size: int, amp: torch.dtype | None) -> dict:
    """What ``model_final.pt`` records about how it was trained."""
    return {**git_state(), "hardware": hardware(device, world_size), "world_size": world_size,
            "amp": str(amp).replace("torch.", "") if amp is not None else "off",
            **package_versions()}


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
