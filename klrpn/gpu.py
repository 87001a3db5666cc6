"""Claim GPUs so that concurrent jobs on one machine never share one.

Snakemake does not set ``CUDA_VISIBLE_DEVICES`` for local jobs: two 1-GPU jobs run under
``--resources gpu=4`` would both land on GPU 0. So, when no scheduler has chosen the devices,
a job takes an exclusive ``flock`` on one lock file per GPU (``<lock_dir>/gpu<i>.lock``). The
kernel drops a flock when its holder exits, however it exits (SIGKILL included), so a lock of a
dead process is stale by construction and the next claim simply takes it. Lock files are never
deleted (deleting a locked file lets two jobs lock different inodes of the same name); each
holds the pid and host of its last claimer, for people reading the folder.

Order of precedence (:func:`acquire`):
1. ``CUDA_VISIBLE_DEVICES`` set (by SLURM, a user, or our own launcher): honour it, claim nothing;
2. ``SLURM_STEP_GPUS`` / ``SLURM_JOB_GPUS`` set: honour the allocation, claim nothing;
3. otherwise claim ``n`` of the machine's GPUs with lock files (waiting while all are taken).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

DEFAULT_LOCK_DIR_ENV = "KLRPN_GPU_LOCK_DIR"


class GPUClaimError(RuntimeError):
    """Not enough GPUs could be claimed."""


def gpus_to_use(cfg: dict, available: int, log=print) -> int:
    """How many GPUs (processes) a cell trains on when ``available`` GPUs are there: its
    ``train.gpus``, or fewer when the machine has fewer (the global batch stays
    ``train.batch_size``; an error when it does not split over them). ``klrpn train`` and
    ``klrpn plan`` ask this."""
    wanted, batch = cfg["train"]["gpus"], cfg["train"]["batch_size"]
    n = max(1, min(wanted, available))
    if batch % n:
        raise ValueError(f"train.batch_size {batch} cannot be split over the {n} GPU(s) available")
    if n < wanted:
        log(f"{cfg['cell']}: the cell asks for {wanted} GPUs, {available} available: training on "
            f"{n} with {batch // n} image(s) each (global batch {batch} unchanged)")
    return n


def default_lock_dir() -> Path:
    """``$KLRPN_GPU_LOCK_DIR``, else ``/tmp/klrpn-gpu-locks`` (one folder per machine)."""
    return Path(os.environ.get(DEFAULT_LOCK_DIR_ENV, "/tmp/klrpn-gpu-locks"))


class GPUClaim:
    """GPUs held by this process: ``ids`` (indices among the devices visible to it) and
    ``env_value`` (what to put in ``CUDA_VISIBLE_DEVICES`` for child processes). Release with
    :meth:`release` or by leaving the ``with`` block; process exit releases it too."""

    def __init__(self, ids: list[int], env_value: str | None, files: list | None = None,
                 source: str = "locks"):
        self.ids, self.env_value, self.source = list(ids), env_value, source
        self._files = files or []

    def release(self) -> None:
        for f in self._files:
            try:
                fcntl.flock(f, fcntl.LOCK_UN)
            finally:
                f.close()
        self._files = []

    def __enter__(self) -> "GPUClaim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"GPUClaim(ids={self.ids}, source={self.source!r})"


def try_lock(lock_dir: Path, gpu: int):
    """Open and exclusively lock ``gpu<gpu>.lock``; the open file on success, None if held."""
    path = lock_dir / f"gpu{gpu}.lock"
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    f.seek(0)
    f.truncate()
    f.write(f"pid={os.getpid()} host={socket.gethostname()} since={time.time():.0f}\n")
    f.flush()
    return f


def claim_gpus(n: int, total: int, *, lock_dir: Path | str | None = None, wait: bool = True,
               poll_s: float = 2.0, timeout_s: float | None = None, log=print) -> GPUClaim:
    """Claim ``n`` of GPUs ``0..total-1`` with lock files in ``lock_dir``.

    All-or-nothing: a partial claim is released before waiting, so two jobs cannot deadlock
    each holding half of what they need. With ``wait=False`` (or after ``timeout_s``) raises
    :class:`GPUClaimError` naming the busy GPUs.
    """
    if n < 1:
        raise ValueError(f"claim_gpus: n must be >= 1, got {n}")
    if n > total:
        raise GPUClaimError(f"need {n} GPU(s) but this machine has {total}")
    lock_dir = Path(lock_dir or default_lock_dir())
    lock_dir.mkdir(parents=True, exist_ok=True)
    start, said = time.monotonic(), False
    while True:
        held = []
        for gpu in range(total):
            f = try_lock(lock_dir, gpu)
            if f is not None:
                held.append((gpu, f))
                if len(held) == n:
                    ids = [g for g, _ in held]
                    return GPUClaim(ids, ",".join(map(str, ids)), [f for _, f in held])
        for _, f in held:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()
        timed_out = timeout_s is not None and time.monotonic() - start >= timeout_s
        if not wait or timed_out:
            raise GPUClaimError(f"cannot claim {n} of {total} GPU(s): only {len(held)} free "
                                f"(locks in {lock_dir})")
        if not said:
            log(f"waiting for {n} free GPU(s) of {total} (locks in {lock_dir}) ...")
            said = True
        time.sleep(poll_s)


def scheduler_gpus() -> list[str] | None:
    """The devices a scheduler (or the user) chose for this process, or None if none did."""
    for var in ("CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        value = os.environ.get(var)
        if value is not None:
            return [v for v in value.split(",") if v.strip() != ""]
    return None


def physical_gpu_count() -> int:
    """Number of GPUs on the machine, without creating a CUDA context (NVML, else CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return 0
    try:
        count = torch.cuda._raw_device_count_nvml()
        if count >= 0:
            return count
    except Exception:  # NVML missing: fall back to the CUDA runtime's count
        pass
    return torch.cuda.device_count()


def acquire(n: int, *, lock_dir: Path | str | None = None, total: int | None = None,
            log=print) -> GPUClaim:
    """Devices for a job that wants ``n`` GPUs (see the module docstring for precedence).

    Returns a claim whose ``ids`` index the devices visible to this process (0..n-1 when a
    scheduler chose them) and ``env_value`` is the ``CUDA_VISIBLE_DEVICES`` for its children.
    """
    chosen = scheduler_gpus()
    if chosen is not None:
        if len(chosen) < n:
            raise GPUClaimError(f"the scheduler allocated {len(chosen)} GPU(s) ({','.join(chosen)}) "
                                f"but this job needs {n}")
        if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
            # children see the same list; take its first n entries
            return GPUClaim(list(range(n)), ",".join(chosen[:n]), source="CUDA_VISIBLE_DEVICES")
        return GPUClaim([int(c) for c in chosen[:n]], ",".join(chosen[:n]), source="SLURM")
    total = physical_gpu_count() if total is None else total
    return claim_gpus(n, total, lock_dir=lock_dir, log=log)
