"""GPU claims with lock files: concurrent jobs never share an id; stale locks are recovered;
a scheduler's CUDA_VISIBLE_DEVICES is honoured. A fake GPU count stands in for the machine."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from klrpn import gpu

CLAIMER = textwrap.dedent("""
    import sys, time, pathlib
    from klrpn.gpu import claim_gpus
    lock_dir, total, n, out, release = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    claim = claim_gpus(n, total, lock_dir=lock_dir, poll_s=0.05, log=lambda *a: None)
    pathlib.Path(out).write_text(",".join(map(str, claim.ids)))
    while not pathlib.Path(release).exists():
        time.sleep(0.05)
""")


def spawn(tmp_path, name, total, n):
    return subprocess.Popen([sys.executable, "-c", CLAIMER, str(tmp_path / "locks"), str(total),
                             str(n), str(tmp_path / f"{name}.ids"), str(tmp_path / "release")])


def wait_file(path, procs, limit_s=60):
    deadline = time.monotonic() + limit_s
    while not path.exists():
        assert all(p.poll() is None for p in procs), "a claimer exited early"
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)
    return [int(i) for i in path.read_text().split(",")]


def test_concurrent_jobs_never_share_a_gpu(tmp_path):
    procs = [spawn(tmp_path, name, total=3, n=1) for name in ("a", "b", "c")]
    try:
        ids = [wait_file(tmp_path / f"{name}.ids", procs) for name in ("a", "b", "c")]
        assert sorted(i for group in ids for i in group) == [0, 1, 2]
        # all three GPUs are held by live processes: a fourth claim cannot get one
        with pytest.raises(gpu.GPUClaimError, match="only 0 free"):
            gpu.claim_gpus(1, 3, lock_dir=tmp_path / "locks", wait=False)
    finally:
        (tmp_path / "release").touch()
        for p in procs:
            p.wait(timeout=60)
    with gpu.claim_gpus(3, 3, lock_dir=tmp_path / "locks", wait=False) as claim:   # released on exit
        assert claim.ids == [0, 1, 2] and claim.env_value == "0,1,2"


def test_stale_lock_of_killed_process_is_recovered(tmp_path):
    proc = spawn(tmp_path, "dead", total=1, n=1)
    assert wait_file(tmp_path / "dead.ids", [proc]) == [0]
    with pytest.raises(gpu.GPUClaimError):
        gpu.claim_gpus(1, 1, lock_dir=tmp_path / "locks", wait=False)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert (tmp_path / "locks" / "gpu0.lock").exists()        # the file stays; its lock is gone
    claim = gpu.claim_gpus(1, 1, lock_dir=tmp_path / "locks", wait=False)
    assert claim.ids == [0]
    assert f"pid={os.getpid()}" in (tmp_path / "locks" / "gpu0.lock").read_text()
    claim.release()


def test_claim_is_all_or_nothing_and_waits(tmp_path):
    held = gpu.claim_gpus(1, 2, lock_dir=tmp_path, wait=False)
    with pytest.raises(gpu.GPUClaimError, match="cannot claim 2 of 2"):
        gpu.claim_gpus(2, 2, lock_dir=tmp_path, wait=False)
    other = gpu.claim_gpus(1, 2, lock_dir=tmp_path, wait=False)   # the partial claim was undone
    assert other.ids != held.ids
    with pytest.raises(gpu.GPUClaimError, match="only 0 free"):
        gpu.claim_gpus(1, 2, lock_dir=tmp_path, timeout_s=0.2, poll_s=0.05, log=lambda *a: None)
    held.release(), other.release()
    with pytest.raises(gpu.GPUClaimError, match="has 2"):
        gpu.claim_gpus(3, 2, lock_dir=tmp_path)


def test_scheduler_allocation_is_honoured(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_STEP_GPUS", raising=False)
    monkeypatch.delenv("SLURM_JOB_GPUS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    claim = gpu.acquire(2, lock_dir=tmp_path, total=4)
    assert claim.ids == [0, 1] and claim.env_value == "2,3" and claim.source == "CUDA_VISIBLE_DEVICES"
    assert not list(tmp_path.iterdir())                       # nothing locked
    with pytest.raises(gpu.GPUClaimError, match="allocated 2"):
        gpu.acquire(3, lock_dir=tmp_path, total=4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("SLURM_STEP_GPUS", "5")
    claim = gpu.acquire(1, lock_dir=tmp_path, total=8)
    assert claim.ids == [5] and claim.source == "SLURM"
    monkeypatch.delenv("SLURM_STEP_GPUS")
    with gpu.acquire(1, lock_dir=tmp_path, total=2) as claim:
        assert claim.source == "locks" and (tmp_path / "gpu0.lock").exists()
