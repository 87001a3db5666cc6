"""Provenance: what a trained model and its metrics record about how they were made.

The git state of the checkout, the hardware, the AMP dtype and the versions of the libraries
that touch the numbers. Nothing here changes what is learned.
"""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path

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


def provenance_at_train(device: torch.device, world_size: int, amp: torch.dtype | None) -> dict:
    """What ``model_final.pt`` records about how it was trained."""
    import torchvision

    return {**git_state(), "hardware": hardware(device, world_size), "world_size": world_size,
            "amp": str(amp).replace("torch.", "") if amp is not None else "off",
            "torch": str(torch.__version__), "torchvision": str(torchvision.__version__)}


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
