"""One run per output folder, and a full disk in one line, on a real smoke cell through
``klrpn train``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import shortened_smoke_params, synthesize_for

from klrpn import checkpoint as ckpt
from klrpn import runlock

BIN = Path(sys.executable).parent
CELL = "voc07-rfcn-resnet101-rpn"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = tmp_path_factory.mktemp("guards")
    # long enough that the first run is still training while the second one starts
    shortened_smoke_params(ws / "params", length=5000, checkpoint_every=5, steps=[4000])
    synthesize_for(ws / "params", ws)
    return ws


def klrpn_train(ws: Path, out: Path) -> list[str]:
    return [str(BIN / "klrpn"), "train", CELL, "--profile", "smoke", "--params", str(ws / "params"),
            "--device", "cpu", "--out", str(out)]


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_second_run_into_a_live_folder_is_refused_and_the_hold_dies_with_its_process(ws):
    out = ws / "busy"
    first = subprocess.Popen(klrpn_train(ws, out), cwd=ws, env=env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "train_log.csv").exists():  # training, so it holds the lock
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        t0 = time.monotonic()
        second = subprocess.run(klrpn_train(ws, out), cwd=ws, env=env(), capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 1
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
        assert f"is in use by another klrpn train (pid {first.pid} on " in second.stderr
        assert time.monotonic() - t0 < 60 and first.poll() is None  # refused at once
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    with runlock.hold(out):  # kill -9 left no stale hold
        pass


def test_hold_is_exclusive_across_processes_and_inherited_by_workers(tmp_path):
    probe = ("import sys; from klrpn import runlock\n"
             "try:\n    with runlock.hold(sys.argv[1]): print('held')\n"
             "except runlock.RunLockError as e: print('refused:', e)")
    with runlock.hold(tmp_path):
        inherited = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True,
                                   text=True, check=True).stdout
        assert inherited.strip() == "held"  # a child of the holder (a torchrun worker)
        other = {k: v for k, v in os.environ.items() if k != runlock.HELD_ENV}
        refused = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True,
                                 text=True, check=True, env=other).stdout
        assert refused.startswith(f"refused: {tmp_path} is in use by another klrpn train (pid {os.getpid()} ")
    assert runlock.HELD_ENV not in os.environ


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root only): the smoke cell's first checkpoint (~1.7 MiB) cannot fit."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_full_disk_is_one_line_naming_the_file_and_leaves_nothing_partial(ws, small_disk):
    out = small_disk / "run"
    proc = subprocess.run(klrpn_train(ws, out), cwd=ws, env=env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    (line,) = [l for l in proc.stderr.splitlines() if l.startswith("klrpn train:")]
    path = ckpt.checkpoint_path(out, 5)
    assert line.startswith(f"klrpn train: no space left on device while writing {path}: it needs about ")
    needed, free = [float(w) for w in line.replace(",", " ").split() if w.replace(".", "").isdigit()][-2:]
    assert needed > free
    assert not ckpt.list_checkpoints(out)
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
