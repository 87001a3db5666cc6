"""Exact resume on every real cell (smoke configurations, shortened schedules), through the
command a user types: ``klrpn train CELL --profile smoke`` is

1. run uninterrupted into ``straight/``;
2. run into ``interrupted/`` and killed with SIGKILL right after its second checkpoint appears,
3. rerun there and stopped with SIGTERM at an arbitrary iteration past that checkpoint (it
   writes a checkpoint and exits 143),
4. rerun there to the end;

then ``model_final.pt`` holds the same weights bit for bit, and ``klrpn evaluate`` writes the
same ``metrics.json`` apart from its timings. The R-FCN cells train multi-scale. The scenarios
of the 12 cells run two at a time (one thread each); each cell's test checks its own.
"""

from __future__ import annotations

import concurrent.futures
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import synthesize_for
from helpers import PARAMS, shortened_smoke_params

from klrpn import checkpoint as ckpt
from klrpn.config import list_cells
from klrpn.monitor import SIGTERM_EXIT

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
LENGTH, EVERY = 30, 10          # checkpoints at 10, 20, 30; killed right after the one at 20
RFCN_SCALES = [96, 128, 160]    # multi-scale training of the R-FCN cells
TIMINGS = {("speed", "ms_per_image"), ("provenance", "wall_time_s"),
           ("provenance", "eval_wall_time_s"), ("provenance", "date")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{cell: outcome of its scenario (a dict, or the exception it raised)}."""
    ws = tmp_path_factory.mktemp("resume")
    params = shortened_smoke_params(ws / "params", length=LENGTH, checkpoint_every=EVERY,
                                    steps=[LENGTH * 2 // 3], warmup_iters=5, rfcn_scales=RFCN_SCALES)
    synthesize_for(params, ws)
    cells = [c["id"] for c in list_cells(params)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {cell: pool.submit(scenario, cell, ws, params) for cell in cells}
        return {cell: _outcome(f) for cell, f in futures.items()}


def _outcome(future):
    try:
        return future.result()
    except Exception as err:  # reported by that cell's test
        return err


def test_all_cells_are_covered(runs):
    from klrpn.config import load_cell

    cfgs = [load_cell(c, "smoke", PARAMS) for c in runs]
    combos = {(c["model"]["detector"], c["model"]["backbone"], c["model"]["proposal"]) for c in cfgs}
    assert len(runs) == 12 and len(combos) == 6


@pytest.mark.parametrize("cell", [c["id"] for c in list_cells(PARAMS)])
def test_killed_and_sigtermed_run_equals_uninterrupted(runs, cell):
    outcome = runs[cell]
    if isinstance(outcome, Exception):
        raise outcome
    assert outcome["killed_after"] >= 2 * EVERY
    assert EVERY * 2 < outcome["sigterm_checkpoint"] < LENGTH
    assert f"iteration {outcome['sigterm_checkpoint']}" in outcome["final_log"]
    a, b = outcome["weights"]
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"{len(differing)} tensors differ, e.g. {differing[:3]}"
    assert outcome["iterations"] == (LENGTH, LENGTH)
    ma, mb = outcome["metrics"]
    assert without_timings(ma) == without_timings(mb)
    if "rfcn" in cell:
        assert len(outcome["train_sizes"]) >= 2  # the multi-scale path


# --- one cell's scenario ------------------------------------------------------------------------

def scenario(cell: str, ws: Path, params: Path) -> dict:
    straight, interrupted = ws / "straight" / cell, ws / "interrupted" / cell
    train = [str(BIN / "klrpn"), "train", cell, "--profile", "smoke", "--params", str(params),
             "--device", "cpu", "--out"]
    run([*train, str(straight)], ws)

    proc = start([*train, str(interrupted)], ws)
    wait_until(lambda: ckpt.checkpoint_path(interrupted, 2 * EVERY).is_file(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    if (interrupted / ckpt.FINAL_NAME).exists():
        raise AssertionError(f"{cell}: the run finished before it was killed")
    killed_after = ckpt.list_checkpoints(interrupted)[-1][0]
    logged = last_logged(interrupted)

    proc = start([*train, str(interrupted)], ws)
    wait_until(lambda: last_logged(interrupted) >= logged + 2, proc)  # resumed and 2 steps on
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    if proc.returncode != SIGTERM_EXIT:
        raise AssertionError(f"{cell}: SIGTERM gave exit {proc.returncode}, not {SIGTERM_EXIT}:\n{out}")
    sigterm_checkpoint = ckpt.list_checkpoints(interrupted)[-1][0]

    final_log = run([*train, str(interrupted)], ws)
    finals = [ckpt.load_final(d) for d in (straight, interrupted)]
    metrics = []
    for d in (straight, interrupted):
        run([str(BIN / "klrpn"), "evaluate", cell, "--profile", "smoke", "--params", str(params),
             "--device", "cpu", "--out", str(d)], ws)
        metrics.append(json.loads((d / "metrics.json").read_text()))
    return {"killed_after": killed_after, "sigterm_checkpoint": sigterm_checkpoint,
            "final_log": final_log, "weights": tuple(f["model"] for f in finals),
            "iterations": tuple(f["iteration"] for f in finals), "metrics": tuple(metrics),
            "train_sizes": finals[0]["cfg"]["input"]["min_size"]}


def env() -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def start(argv: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=cwd, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def run(argv: list[str], cwd: Path) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env(), capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def wait_until(condition, proc: subprocess.Popen, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run exited early ({proc.returncode}):\n{proc.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the run never reached the point to interrupt it")
        time.sleep(0.005)


def last_logged(out_dir: Path) -> int:
    """The last iteration in ``train_log.csv`` (0 if none yet)."""
    try:
        with open(out_dir / "train_log.csv", newline="") as f:
            rows = [r for r in csv.reader(f)][1:]
    except FileNotFoundError:
        return 0
    return max((int(r[0]) for r in rows if r and r[0].isdigit()), default=0)


def without_timings(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    for section, key in TIMINGS:
        doc.get(section, {}).pop(key, None)
    return doc
