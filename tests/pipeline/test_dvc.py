"""Snakemake and DVC declare the same cells, stages and outputs, read from params/cells.yaml."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from conftest import REPO, job_outputs, snakemake

dvc_repo = pytest.importorskip("dvc.repo")


@pytest.fixture(scope="module")
def dvc_stages():
    with dvc_repo.Repo(str(REPO)) as repo:
        stages = {}
        for s in repo.index.stages:
            if not getattr(s, "cmd", None):
                continue  # data.dvc and other .dvc files
            stages[s.addressing] = {
                "cmd": s.cmd,
                "outs": {str(Path(o.fs_path).relative_to(REPO)) for o in s.outs},
                "deps": {str(Path(d.fs_path).relative_to(REPO)) for d in s.deps},
                "params": {str(Path(p.fs_path).relative_to(REPO)) for p in s.params},
            }
    return stages


def _by_rule(stages):
    out = defaultdict(dict)
    for name, s in stages.items():
        out[name.split("@")[0]][name] = s
    return out


def test_same_cells_stages_and_outputs(workdir, dvc_stages):
    cells = [c["id"] for c in yaml.safe_load((REPO / "params/cells.yaml").read_text())["cells"]]
    smk = job_outputs(snakemake(workdir, "-n", "--profile", "workflow/profiles/smoke").stdout)
    dvc = _by_rule(dvc_stages)
    for rule in ("train", "evaluate", "figure3", "report"):
        assert rule in smk and rule in dvc, rule
        dvc_outs = set().union(*(s["outs"] for s in dvc[rule].values()))
        # DVC additionally caches the checkpoints (Snakemake leaves them undeclared so a
        # requeued job keeps them); every other output is the same path in both
        dvc_outs = {p for p in dvc_outs if not p.endswith("/checkpoints")}
        assert smk[rule] == dvc_outs, rule
    for rule in ("train", "evaluate"):
        assert len(dvc[rule]) == len(cells)
        assert {Path(p).parent.name for p in smk[rule]} == set(cells)
    # every train / evaluate stage runs the klrpn command of its own cell
    for rule in ("train", "evaluate"):
        for s in dvc[rule].values():
            cell = {Path(p).parent.name for p in s["outs"]}
            assert len(cell) == 1
            assert s["cmd"].startswith(f"klrpn {rule} {cell.pop()} --profile smoke --out results/")


def test_train_stages_list_their_cells_params(dvc_stages):
    for name, s in _by_rule(dvc_stages)["train"].items():
        (cell,) = {Path(p).parent.name for p in s["outs"]}
        assert {"params/defaults.yaml", f"params/cells/{cell}.yaml",
                "params/profiles/smoke.yaml"} <= s["params"], name
        assert {"params/datasets", "params/backbones", "params/proposals", "params/shared"} <= s["deps"]


def test_no_stage_writes_into_the_dvc_tracked_data_dir(dvc_stages):
    for name, s in dvc_stages.items():
        assert not any(p == "data" or p.startswith("data/") for p in s["outs"]), name


def test_metrics_and_plots_are_declared():
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    ev = spec["stages"]["evaluate"]
    assert any("metrics.json" in next(iter(m)) for m in ev["metrics"])
    tr = spec["stages"]["train"]
    assert any("train_log.csv" in next(iter(p)) for p in tr["plots"])
    assert spec["vars"][0] == "params/cells.yaml"
