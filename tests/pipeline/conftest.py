"""Helpers for the workflow tests: a scratch copy of the workflow and params, and snakemake runs.

Each test works in its own temporary directory (a copy of Snakefile, workflow/ and params/), so
the tests never touch the checkout's results/, data/ or .snakemake/ and may run beside a real
pipeline run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, metrics_doc  # noqa: E402
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")
DVC = str(BIN / "dvc")


def _copy_workflow(dst: Path) -> Path:
    shutil.copy2(REPO / "Snakefile", dst / "Snakefile")
    shutil.copytree(REPO / "workflow", dst / "workflow")
    shutil.copytree(REPO / "params", dst / "params")
    return dst


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A scratch copy of the workflow (Snakefile, workflow/, params/)."""
    return _copy_workflow(tmp_path)


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("KLRPN_PARAMS", None)
    proc = subprocess.run([SNAKEMAKE, *args], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a snakemake (dry) run: {rule: count} (empty if nothing to do)."""
    m = re.search(r"Job stats:\njob\s+count\n[- ]+\n(.*?)\ntotal\s+(\d+)", output, re.S)
    if not m:
        return {}
    counts = {}
    for line in m.group(1).splitlines():
        name, n = line.split()
        counts[name] = int(n)
    assert sum(counts.values()) == int(m.group(2))
    return counts


def job_outputs(output: str) -> dict[str, set[str]]:
    """{rule: set of output paths} from a dry run's job descriptions."""
    outs: dict[str, set[str]] = {}
    rule = None
    for line in output.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            rule = m.group(1)
            continue
        m = re.match(r"^\s+output: (.*)$", line)
        if m and rule:
            for path in m.group(1).split(", "):
                outs.setdefault(rule, set()).add(path.replace(" (update)", "").strip())
    return outs


def _fabricated(rel: str, args: tuple[str, ...]) -> str:
    """A schema-valid made-up metrics.json for the output ``rel`` (results/[seed<N>/]<cell>/...)."""
    import json

    parts = Path(rel).parts
    m = re.fullmatch(r"seed(\d+)", parts[1])
    seed, cell = (int(m.group(1)), parts[2]) if m else (0, parts[1])
    profile = "smoke" if any("profiles/smoke" in a for a in args) else "paper"
    return json.dumps(metrics_doc(cell, profile=profile, seed=seed))


def complete_outputs(workdir: Path, *args: str) -> None:
    """Create every output of the dry run of ``snakemake args`` (empty files, each metrics.json a
    made-up valid document; the synthetic data folder as a folder) and mark them up to date with
    ``--touch``: a complete run, instantly."""
    proc = snakemake(workdir, "-n", *args)
    for rule, paths in job_outputs(proc.stdout).items():
        for p in paths:
            path = workdir / p
            if rule == "synth":
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(_fabricated(p, args) if path.name == "metrics.json" else "")
    snakemake(workdir, *args, "--touch")
    assert job_counts(snakemake(workdir, "-n", *args).stdout) == {}
