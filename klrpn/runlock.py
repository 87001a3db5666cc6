"""One training run per output folder.

``klrpn train`` holds an exclusive ``flock`` on ``OUT/.klrpn-train.lock`` for as long as it
runs; a second run into the same folder (another shell, a duplicated Snakemake or SLURM job)
fails at once, naming the process that holds it. The lock belongs to the open file, so the
kernel drops it when its process ends in any way, ``kill -9`` included: nothing stale is left
to clean up. The file itself stays (with the last holder's pid, host and start time, for the
message); it is never deleted, since deleting a lock file races with a process opening it.

``flock`` works on local filesystems and on NFS v4 (Linux emulates it with POSIX locks).
Processes started under a holder (the torchrun workers of a multi-GPU run) inherit the hold
through :data:`HELD_ENV` instead of taking it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from pathlib import Path

from klrpn.layout import RUN_LOCK as LOCK_NAME

HELD_ENV = "KLRPN_RUN_LOCK_HELD"  # resolved output folder whose lock a parent process holds


class RunLockError(RuntimeError):
    """Another live process is training into the same output folder."""


@contextlib.contextmanager
def hold(out_dir: Path | str):
    """Hold ``out_dir``'s run lock for the ``with`` block; :class:`RunLockError` if another
    process holds it. A no-op where a parent process holds it for us (:data:`HELD_ENV`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if os.environ.get(HELD_ENV) == str(out_dir.resolve()):
        yield
        return
    path = out_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown process"
            raise RunLockError(
                f"{out_dir} is in use by another klrpn train ({holder}); wait for it to finish "
                f"or stop it, or train into another --out folder") from None
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}: "
                      f"{' '.join(sys.argv)}\n".encode(), 0)
        previous = os.environ.get(HELD_ENV)
        os.environ[HELD_ENV] = str(out_dir.resolve())  # inherited by the torchrun workers
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop(HELD_ENV, None)
            else:
                os.environ[HELD_ENV] = previous
    finally:
        os.close(fd)  # releases the lock
