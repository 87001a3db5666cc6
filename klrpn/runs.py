"""Which run a run folder holds, and what to do when it is not the one asked for.

A folder (:func:`klrpn.layout.run_dir`) holds one run: its checkpoints and, once finished,
``model_final.pt``, each recording the run identity it was made with (:mod:`klrpn.identity`).
:func:`check_same_run` refuses to resume or reuse another run; :func:`archive_stale_run` moves
it aside to ``stale-<old run id>/`` and says which of params, data and training-code modules
changed.
"""

from __future__ import annotations

from pathlib import Path

from klrpn import checkpoint as ckpt
from klrpn.identity import describe_differences, differences as identity_differences
from klrpn.layout import FINAL_NAME, RUN_LOCK, STALE_PREFIX


def recorded_identity(out_dir: Path) -> tuple[Path, dict | None] | None:
    """``(file, run identity)`` of the run in ``out_dir``: from ``model_final.pt`` when training
    finished, else from the newest checkpoint; None when neither exists. Files written before run
    identities existed give ``{"params_hash": ...}`` only (so they never match a current run)."""
    final, latest = out_dir / FINAL_NAME, ckpt.find_latest(out_dir)
    if final.is_file():
        state = ckpt.load_final(out_dir)
        return final, state["cfg"].get("run_identity") or {"params_hash": state["cfg"].get("params_hash")}
    if latest is not None:
        state = ckpt.load(latest)
        return latest, state.get("run_identity") or {"params_hash": state.get("params_hash")}
    return None


def _describe_change(old: dict, new: dict) -> str:
    return (f"made with {describe_differences(old, new)} (run id {str(old.get('id'))[:12]}, "
            f"now {new['id'][:12]}; klrpn.identity)")


def check_same_run(out_dir: Path, identity: dict) -> None:
    """Refuse (CheckpointError) to resume or reuse a run of ``out_dir`` made with other params,
    data or training code than ``identity`` says."""
    found = recorded_identity(out_dir)
    if found is not None and identity_differences(found[1], identity):
        raise ckpt.CheckpointError(
            f"{found[0]} was {_describe_change(found[1], identity)}: resuming it would mix two "
            "runs; pass --restart-on-params-change to move it aside and train afresh, or train "
            "into another --out")


def archive_stale_run(out_dir: Path, identity: dict, log=print) -> Path | None:
    """Move everything in ``out_dir`` (final model, checkpoints, curves, metrics) into
    ``out_dir/stale-<old run id>/`` when it was made by another run than ``identity`` (other
    params, data or training code). Returns the archive folder, or None when there was nothing
    stale."""
    found = recorded_identity(out_dir)
    if found is None or not identity_differences(found[1], identity):
        return None
    old = found[1]
    archive = out_dir / f"{STALE_PREFIX}{str(old.get('id') or old.get('params_hash'))[:12]}"
    archive.mkdir(exist_ok=True)
    for entry in sorted(out_dir.iterdir()):
        if not entry.name.startswith(STALE_PREFIX) and entry.name != RUN_LOCK:
            entry.rename(archive / entry.name)
    log(f"{out_dir}: the run there was {_describe_change(old, identity)}: moved it to {archive} "
        "and training from iteration 0")
    return archive


def already_trained(out_dir: Path, cfg: dict, log=print) -> bool:
    """True when ``model_final.pt`` exists for this exact run (``cfg["run_identity"]``); an
    error if made by another run."""
    path = out_dir / FINAL_NAME
    if not path.is_file():
        return False
    found = recorded_identity(out_dir)
    if identity_differences(found[1], cfg["run_identity"]):
        raise ckpt.CheckpointError(
            f"{path} was {_describe_change(found[1], cfg['run_identity'])}: remove it to retrain, "
            "or use another --out")
    log(f"{path} exists for this run (same params, data and code): training already complete")
    return True
