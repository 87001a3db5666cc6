"""Checkpoints: atomic writes, the latest one, RNG states, and the final model.

Files under a cell's output folder ``results/CELL``:

- ``checkpoints/iter_XXXXXXX.pt`` (iteration = optimiser steps done), the last
  :data:`KEEP_LAST` kept: ``{"iteration", "model", "optimizer", "scheduler", "scaler",
  "rng": [per-rank states], "world_size", "params_hash", "wall_time_s"}``;
- ``model_final.pt``: ``{"model": state_dict, "cfg": resolved config, "iteration": int,
  "wall_time_s": float, "provenance": {...}}``; its presence means training completed.

Everything is plain tensors / dicts / lists / numbers / strings, so ``torch.load(path,
weights_only=True)`` reads it. Writes go to a temporary name in the same folder, are fsynced,
then renamed: a killed writer leaves a ``.tmp-*`` file (removed by :func:`clean_partial`),
never a truncated checkpoint under a real name.
"""

from __future__ import annotations

import errno
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from klrpn.atomic import atomic_output, remove_partials
from klrpn.layout import CKPT_DIR, FINAL_NAME

KEEP_LAST = 3  # periodic checkpoints kept per run (older ones are deleted)
_CKPT_RE = re.compile(r"^iter_(\d{7,})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not belong to this run."""


class DiskFullError(CheckpointError):
    """The filesystem ran out of space while a checkpoint or model was written."""


def atomic_save(obj, path: Path | str) -> Path:
    """``torch.save`` to a temporary sibling, fsync, then rename over ``path``. A write that
    fails for lack of space removes the partial file and raises :class:`DiskFullError`."""
    path = Path(path)
    try:
        with atomic_output(path, fsync=True) as tmp:
            torch.save(obj, tmp)
    except Exception as err:
        raise_if_disk_full(err, path, obj)
        raise
    return path


def raise_if_disk_full(err: Exception, path: Path, obj) -> None:
    """Turn a failed write of ``obj`` to ``path`` into a one-line :class:`DiskFullError` when
    the disk is full: ENOSPC, or (torch's zip writer reports it as ``RuntimeError: [enforce
    fail at inline_container.cc] ... unexpected pos``) less space free than ``obj`` needs."""
    needed = payload_bytes(obj)
    free = shutil.disk_usage(path.parent).free  # measured after the partial file was removed
    if getattr(err, "errno", None) != errno.ENOSPC and free >= needed:
        return
    raise DiskFullError(
        f"no space left on device while writing {path}: it needs about {needed / 2**20:.1f} MiB, "
        f"{free / 2**20:.1f} MiB are free there; the partial file was removed, free some space "
        f"and rerun the same command (it resumes from the last checkpoint)") from None


def payload_bytes(obj) -> int:
    """Bytes of the tensors in a nested dict/list ``obj`` (about the size torch.save writes)."""
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(payload_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(v) for v in obj)
    return 0


def load(path: Path | str, device="cpu") -> dict:
    """``torch.load(path, weights_only=True)``; a clear error names the file."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as err:
        raise CheckpointError(f"{path}: cannot load checkpoint: {err}") from err


def checkpoint_path(out_dir: Path | str, iteration: int) -> Path:
    return Path(out_dir) / CKPT_DIR / f"iter_{iteration:07d}.pt"


def list_checkpoints(out_dir: Path | str) -> list[tuple[int, Path]]:
    """``[(iteration, path)]`` of the periodic checkpoints, oldest first."""
    folder = Path(out_dir) / CKPT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT_RE.match(p.name))]
    return sorted(found)


def find_latest(out_dir: Path | str) -> Path | None:
    """The newest periodic checkpoint, or None."""
    found = list_checkpoints(out_dir)
    return found[-1][1] if found else None


def clean_partial(out_dir: Path | str) -> None:
    """Delete temporary files a killed writer left behind."""
    for folder in (Path(out_dir), Path(out_dir) / CKPT_DIR):
        remove_partials(folder)
        if folder.is_dir():
            for p in folder.glob(".*.tmp-*"):   # the temporary names of older klrpn versions
                p.unlink(missing_ok=True)


def prune(out_dir: Path | str, keep: int = KEEP_LAST) -> None:
    """Delete all but the newest ``keep`` periodic checkpoints."""
    for _, path in list_checkpoints(out_dir)[:-keep]:
        path.unlink(missing_ok=True)


# --- RNG states as tensors ---------------------------------------------------------------------

def capture_rng() -> dict:
    """Python, numpy, torch CPU and (current device) CUDA generator states, as tensors
    (weights_only-safe)."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": torch.tensor(words, dtype=torch.int64),
        "python_version": version,
        "python_gauss": [] if gauss is None else [float(gauss)],
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "numpy_meta": [int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # this process's device only: touching the others would open a context on each
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict) -> None:
    """Inverse of :func:`capture_rng`."""
    gauss = state["python_gauss"][0] if state["python_gauss"] else None
    random.setstate((state["python_version"], tuple(state["python"].tolist()), gauss))
    pos, has_gauss, cached = state["numpy_meta"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), int(pos),
                         int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


# --- final model -------------------------------------------------------------------------------

def save_final(out_dir: Path | str, model_state: dict, cfg: dict, iteration: int, **extra) -> Path:
    """Write ``model_final.pt`` atomically (its presence marks a completed training run)."""
    return atomic_save({"model": model_state, "cfg": cfg, "iteration": int(iteration), **extra},
                       Path(out_dir) / FINAL_NAME)


def load_final(out_dir: Path | str, device="cpu") -> dict:
    """The ``model_final.pt`` dict of ``out_dir``; a clear error if training did not finish."""
    path = Path(out_dir) / FINAL_NAME
    if not path.is_file():
        raise CheckpointError(f"{path} not found: train the cell first "
                              f"(`klrpn train CELL --out {out_dir}`)")
    final = load(path, device)
    for key in ("model", "cfg", "iteration"):
        if key not in final:
            raise CheckpointError(f"{path}: missing key {key!r}; not a klrpn model_final.pt")
    return final


def load_final_model(out_dir: Path | str, device="cpu"):
    """``(model, cfg)``: the trained detector of ``out_dir`` in eval mode on ``device``, and the
    resolved config it was trained with. ImageNet weights are not read (every weight comes
    from the checkpoint)."""
    from klrpn.models import build_model

    final = load_final(out_dir, device)
    cfg = final["cfg"]
    model = build_model(cfg, load_pretrained=False)
    try:
        model.load_state_dict(final["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{Path(out_dir) / FINAL_NAME}: weights do not fit the model "
                              f"built from its config: {err}") from err
    return model.to(device).eval(), cfg
