"""Snakemake and DVC declare the same cells, stages and outputs, read from params/cells.yaml."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from conftest import REPO, job_outputs, snakemake

from klrpn.config import list_cells, load_cell
from klrpn.layout import TRAINING_CODE

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


# Snakemake rule -> DVC stages (the two table stages are Snakemake's `report` rule; DVC's
# data-check stage has no rule: Snakemake's download jobs are the inputs of its training jobs)
RULE_OF_STAGE = {"synth": "synth", "train": "train", "evaluate": "evaluate", "figure3": "figure3",
                 "table1": "report", "table2": "report", "data-check": None}


def test_same_cells_stages_and_outputs(workdir, dvc_stages):
    cells = [c["id"] for c in list_cells(REPO / "params")]
    smk = job_outputs(snakemake(workdir, "-n", "--profile", "workflow/profiles/smoke").stdout)
    dvc = defaultdict(set)
    for name, s in dvc_stages.items():
        dvc[RULE_OF_STAGE[name.split("@")[0]]] |= s["outs"]
    for rule in ("synth", "train", "evaluate", "figure3", "report"):
        # DVC additionally caches the checkpoints (Snakemake leaves them undeclared so a
        # requeued job keeps them); every other output is the same path in both
        dvc_outs = {p for p in dvc[rule] if not p.endswith("/checkpoints")}
        assert smk[rule] == dvc_outs, rule
    by_rule = _by_rule(dvc_stages)
    for rule in ("train", "evaluate"):
        # one stage per cell, named by the cell (`dvc dag` shows train@<cell>)
        assert sorted(by_rule[rule]) == sorted(f"{rule}@{c}" for c in cells)
        assert {Path(p).parent.name for p in smk[rule]} == set(cells)
    # every train / evaluate stage runs the klrpn command of its own cell with all the cores
    for rule in ("train", "evaluate"):
        for name, s in by_rule[rule].items():
            cell = name.split("@")[1]
            assert {Path(p).parent.name for p in s["outs"]} == {cell}
            assert s["cmd"].startswith(f"OMP_NUM_THREADS=$(nproc) klrpn {rule} {cell} "
                                       f"--profile smoke --out results/{cell}"), s["cmd"]


def test_synthetic_data_is_outside_data_and_the_smoke_cells_read_it(dvc_stages):
    assert dvc_stages["synth"]["outs"] == {"synthetic"}
    for c in list_cells(REPO / "params"):
        root = Path(load_cell(c["id"], "smoke", REPO / "params")["dataset"]["root"])
        assert root.parts[0] == "synthetic", (c["id"], root)
        assert "synthetic" in dvc_stages[f"train@{c['id']}"]["deps"]


def test_train_stages_list_their_cells_params_and_the_training_code(dvc_stages):
    for name, s in _by_rule(dvc_stages)["train"].items():
        cell = name.split("@")[1]
        assert {"params/defaults.yaml", f"params/cells/{cell}.yaml",
                "params/profiles/smoke.yaml"} <= s["params"], name
        assert {"params/datasets", "params/backbones", "params/proposals", "params/shared"} <= s["deps"]
        code = {d for d in s["deps"] if d.startswith("klrpn")}
        assert code == set(TRAINING_CODE), name     # what klrpn.identity hashes, no more, no less


def test_each_table_depends_on_its_own_cells_metrics_one_line_per_cell():
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for table in (1, 2):
        deps = spec[f"table{table}"]["deps"]
        metrics = [d for d in deps if d.endswith("/metrics.json")]
        expected = [f"${{results}}/{c['id']}/metrics.json" for c in list_cells(REPO / "params")
                    if c["table"] == table]
        assert metrics == expected, table
        assert "${results}" not in deps          # not the whole results/ folder
        assert spec[f"table{table}"]["cmd"].startswith(f"klrpn report table{table} ")


def test_outputs_a_rerun_needs_persist_and_every_output_is_cached():
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    persisted = set()
    for name, stage in spec.items():
        body = stage.get("do", stage)
        for kind in ("outs", "metrics", "plots"):
            for out in body.get(kind, []):
                path, opts = (out, {}) if isinstance(out, str) else next(iter(out.items()))
                assert opts.get("cache", True), (name, path)   # pushed, pulled, restored
                if opts.get("persist"):
                    persisted.add((name, path.rsplit("/", 1)[-1]))
    assert persisted == {("train", name)
                         for name in ("checkpoints", "model_final.pt", "train_log.csv")} | {
        ("evaluate", name) for name in ("detections.json", "metrics.json")} | {
        ("data-check", "data-check.json"), ("synth", "synthetic")}


def test_the_generated_dvc_runs_file_is_current_and_follows_the_layout(monkeypatch):
    from klrpn import layout
    from klrpn.pipelines import dvc_runs_text

    monkeypatch.chdir(REPO)   # the paths the file's header names are relative to the checkout
    sources = {"params_dir": "params", "dvc_vars": "workflow/config/dvc-vars.yaml",
               "config": "workflow/config/config.yaml"}
    committed = (REPO / layout.DVC_RUNS_FILE).read_text()
    expected = dvc_runs_text(**sources)
    assert committed == expected, "run `klrpn pipeline dvc-runs` and commit the file"
    runs = yaml.safe_load(committed)["runs"]
    cells = [c["id"] for c in list_cells(REPO / "params")]
    assert [r["cell"] for r in runs.values()] == cells
    for name, r in runs.items():
        assert r["dir"] == layout.run_dir("results", r["cell"], r["seed"]).as_posix()
        assert name == layout.run_name(r["cell"], r["seed"])


def test_no_stage_writes_into_the_dvc_tracked_data_dir(dvc_stages):
    for name, s in dvc_stages.items():
        assert not any(p == "data" or p.startswith("data/") for p in s["outs"]), name


def test_data_dvc_tracks_nothing_until_dvc_add_and_says_how_to_share():
    text = (REPO / "data.dvc").read_text()
    assert yaml.safe_load(text) == {"outs": []}      # `dvc status` clean, `dvc pull` exits 0
    for command in ("klrpn data download", "dvc add data", "dvc push", "dvc pull data.dvc"):
        assert command in text, command


def test_data_check_is_the_first_stage_and_upstream_of_every_training_stage(dvc_stages):
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert next(iter(spec)) == "data-check"          # DVC runs independent stages in file order
    check = dvc_stages["data-check"]
    assert check["cmd"] == ("klrpn data check --profile smoke --params params --results results "
                            "--out results/data-check.json")
    assert check["outs"] == {"results/data-check.json"}
    assert "synthetic" in check["deps"]              # smoke: after `synth`, on its output
    # never data/ itself: DVC would stop on the missing dependency with its own message first
    assert not any(d == "data" or d.startswith("data/") for d in check["deps"])
    for name, s in _by_rule(dvc_stages)["train"].items():
        assert "results/data-check.json" in s["deps"], name


def test_metrics_and_plots_are_declared():
    full = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert "workflow/config/dvc-runs.yaml" in full["vars"]      # the per-run list
    spec = full["stages"]
    assert spec["train"]["foreach"] == spec["evaluate"]["foreach"] == "${runs}"
    assert spec["evaluate"]["do"]["metrics"] == [{"${item.dir}/metrics.json": {"persist": True}}]
    (plot,) = spec["train"]["do"]["plots"]
    assert next(iter(plot)).endswith("train_log.csv")
    assert next(iter(plot.values()))["x"] == "iteration"
