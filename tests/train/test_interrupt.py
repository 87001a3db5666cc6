"""Kill-and-resume through real processes: SIGKILL after the first checkpoint, then rerun, ends
bitwise equal to an uninterrupted run; SIGTERM writes a checkpoint and exits 143."""

import os
import signal
import subprocess
import sys
import time

import torch
from conftest import final_weights
from toy import run

from klrpn import checkpoint as ckpt
from klrpn.monitor import SIGTERM_EXIT


def start(toy_script, out, *args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(toy_script), str(out), "--max-iter", "12",
                             "--checkpoint-every", "4", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(path, proc, limit_s=120):
    """Wait until ``path`` exists (the toy touches it when it reaches the gate)."""
    deadline = time.monotonic() + limit_s
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"toy run exited early ({proc.returncode}): {proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("toy run never reached its gate")
        time.sleep(0.05)


def finish(proc):
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


def test_sigkill_then_rerun_equals_uninterrupted(tmp_path, toy_script):
    # the reference runs in this process (one thread, like the toy script)
    run(tmp_path / "straight", max_iter=12, checkpoint_every=4, log=lambda *a: None)

    killed = tmp_path / "killed"
    proc = start(toy_script, killed, "--block-at", 6, "--ready", tmp_path / "ready")
    wait_for(tmp_path / "ready", proc)          # steps 1-5 done, checkpoint 4 on disk
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert [it for it, _ in ckpt.list_checkpoints(killed)] == [4]
    assert not (killed / "model_final.pt").exists()

    code, out = finish(start(toy_script, killed))
    assert code == 0, out
    assert "resuming from" in out and "iteration 4" in out
    a, b = final_weights(tmp_path / "straight"), final_weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_writes_checkpoint_and_exits_143(tmp_path, toy_script):
    out = tmp_path / "run"
    proc = start(toy_script, out, "--block-at", 7, "--ready", tmp_path / "ready",
                 "--go", tmp_path / "go")
    wait_for(tmp_path / "ready", proc)          # blocked before step 7; checkpoint 4 exists
    proc.send_signal(signal.SIGTERM)
    (tmp_path / "go").touch()                   # let step 7 finish; the loop then stops
    code, text = finish(proc)
    assert code == SIGTERM_EXIT, text
    assert [it for it, _ in ckpt.list_checkpoints(out)] == [4, 7]
    assert torch.load(ckpt.checkpoint_path(out, 7), weights_only=True)["iteration"] == 7
    assert not (out / "model_final.pt").exists()
