"""Launching a training run: device and GPU choice, torchrun, the run lock, stale runs.

:func:`train_cell` is what ``klrpn train`` calls. It resolves the cell, computes the run identity,
holds the output folder's run lock (:mod:`klrpn.runlock`), deals with a run of another identity
already there (:mod:`klrpn.runs`), picks the device, claims GPUs (:mod:`klrpn.gpu`), and then
either trains in this process (:func:`klrpn.train.run_cell`: CPU or one GPU) or re-launches
itself under torchrun with one process per claimed GPU (:func:`torchrun`). Under torchrun, the
process is one worker. Nothing here changes what is learned.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from klrpn import distributed as dist_utils
from klrpn import runlock
from klrpn.distributed import World
from klrpn.gpu import gpus_to_use
from klrpn.identity import run_identity
from klrpn.layout import run_dir
from klrpn.runs import already_trained, archive_stale_run, check_same_run
from klrpn.train import run_cell


def pick_device(cfg: dict, device: str | None) -> str:
    """"cpu" or "cuda" for this cell: ``device`` if given, else CUDA when train.gpus > 0 and a
    GPU is present."""
    if device is not None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"--device {device}: CUDA is not available on this machine")
        return device
    return "cuda" if cfg["train"]["gpus"] > 0 and torch.cuda.is_available() else "cpu"


def train_cell(cell_id: str, profile: str = "paper", out_dir: Path | str | None = None, *,
               params_dir=None, device: str | None = None, amp: str | None = None,
               restart_on_params_change: bool = False, seed: int | None = None,
               overrides=None, log=print) -> int:
    """Train one cell into ``out_dir`` (default ``results/CELL``, or
    ``klrpn.layout.run_dir("results", CELL, seed, overrides)`` with ``seed`` / ``overrides``);
    returns an exit status. ``seed`` overrides the params' seed and ``overrides`` (``--set``
    items ``KEY=VALUE``) any params value (:func:`klrpn.config.load_cell`); both are checked
    before anything else happens.

    Only one run may train into ``out_dir`` at a time (:mod:`klrpn.runlock`); a second one
    fails at once with :class:`~klrpn.runlock.RunLockError`. Under torchrun, this process is
    one worker. Otherwise it picks the device, claims GPUs
    (:mod:`klrpn.gpu`) and either trains in this process (CPU or one GPU) or re-launches itself
    under torchrun with one process per claimed GPU. With ``restart_on_params_change``, a run
    of ``out_dir`` made by another run (other params, data or training code:
    :mod:`klrpn.identity`) is moved aside (:func:`archive_stale_run`) instead of being an
    error: the pipelines retrain a cell whose params, data or code changed.
    """
    from klrpn.config import load_cell, override_items

    cfg = load_cell(cell_id, profile, params_dir, seed=seed, overrides=overrides)
    cfg["run_identity"] = run_identity(cfg)  # params, data, code (klrpn.identity); checkpoints keep it
    out_dir = Path(out_dir or run_dir("results", cell_id, seed or 0, cfg["overrides"]))
    if cfg["overrides"] and not dist_utils.under_torchrun():
        log(f"{cell_id}: --set {' '.join(override_items(cfg['overrides']))} "
            f"(params hash {cfg['params_hash'][:12]}), into {out_dir}")
    worker = dist_utils.under_torchrun() and dist_utils.world_from_env().rank != 0
    with contextlib.nullcontext() if worker else runlock.hold(out_dir):
        return _train_cell(cfg, out_dir, profile=profile, params_dir=params_dir, device=device,
                           amp=amp, restart_on_params_change=restart_on_params_change,
                           seed=seed, log=log)


def _train_cell(cfg: dict, out_dir: Path, *, profile: str, params_dir, device: str | None,
                amp: str | None, restart_on_params_change: bool, log,
                seed: int | None = None) -> int:
    """:func:`train_cell` once the output folder's run lock is held."""
    from klrpn import gpu

    from klrpn.config import override_items

    cell_id = cfg["cell"]
    if not dist_utils.under_torchrun():
        if restart_on_params_change:
            archive_stale_run(out_dir, cfg["run_identity"], log)
        else:
            check_same_run(out_dir, cfg["run_identity"])
    if already_trained(out_dir, cfg, log):
        return 0
    if dist_utils.under_torchrun():
        world = dist_utils.world_from_env()
        dev = torch.device(f"cuda:{world.local_rank}") if pick_device(cfg, device) != "cpu" \
            else torch.device("cpu")
        return run_cell(cfg, out_dir, dev, world, amp, log)
    kind = pick_device(cfg, device)
    if kind == "cpu":
        return run_cell(cfg, out_dir, torch.device("cpu"), World(), amp, log)
    if ":" in kind:  # an explicit device such as cuda:1: the user chose, nothing to claim
        return run_cell(cfg, out_dir, torch.device(kind), World(), amp, log)
    visible = gpu.scheduler_gpus()
    n = gpus_to_use(cfg, len(visible) if visible is not None else gpu.physical_gpu_count(), log)
    with gpu.acquire(n, log=log) as claim:
        log(f"{cell_id}: using GPU(s) {claim.env_value} ({claim.source})")
        if n == 1:
            return run_cell(cfg, out_dir, torch.device(f"cuda:{claim.ids[0]}"), World(), amp, log)
        argv = ["train", cell_id, "--profile", profile, "--out", str(out_dir)]
        if params_dir is not None:
            argv += ["--params", str(params_dir)]
        if amp is not None:
            argv += ["--amp", amp]
        if seed is not None:
            argv += ["--seed", str(seed)]
        for item in override_items(cfg["overrides"]):
            argv += ["--set", item]
        return torchrun(n, argv, claim.env_value)


def torchrun(nproc: int, argv: list[str], visible_devices: str | None) -> int:
    """Run ``python -m klrpn.cli *argv`` under torchrun with ``nproc`` workers; forward
    SIGTERM/SIGINT to it (torchrun passes them to the workers) and return its exit status."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "klrpn.cli", *argv]
    env = dict(os.environ)
    if visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible_devices
    proc = subprocess.Popen(cmd, env=env)
    previous = {}

    def forward(signum, _frame):
        proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, forward)
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
