"""Seeds as a dimension of the workflow (issue 10): one train / evaluate job per (cell, seed) in
Snakemake (dry runs, local and SLURM), adding a seed schedules only its jobs, the seed reports
build exactly their runs, and DVC has a stage per (cell, seed)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import DVC, REPO, complete_outputs, job_counts, job_outputs, snakemake

from klrpn.config import list_cells, list_variants

CELLS = [c["id"] for c in list_cells(REPO / "params")]
VARIANTS = [v["id"] for v in list_variants(REPO / "params")]
BASE = "voc0712-faster_rcnn-vgg16-klrpn"
BASE_RPN = "voc0712-faster_rcnn-vgg16-rpn"
SMOKE = ("--profile", "workflow/profiles/smoke")


def runs_of(outs: set[str]) -> set[tuple[str, int]]:
    """{(cell, seed)} of a job's outputs: results/<cell>/... is seed 0, results/seed<N>/<cell>/... N."""
    runs = set()
    for p in outs:
        parts = Path(p).parts
        m = re.fullmatch(r"seed(\d+)", parts[1])
        runs.add((parts[2], int(m.group(1))) if m else (parts[1], 0))
    return runs


def shell_commands(stdout: str, rule: str) -> list[str]:
    return [line for line in stdout.splitlines()
            if line.startswith("Shell command:") and f" klrpn.cli {rule} " in line]


def test_paper_dag_with_three_seeds_lists_36_training_jobs(workdir):
    proc = snakemake(workdir, "-n", "-p", "--cores", "all", "--config", "seeds=[0,1,2]")
    counts = job_counts(proc.stdout)
    assert counts["train"] == 36 and counts["evaluate"] == 36
    assert counts["report"] == 2 and counts["figure3"] == 1     # the tables read seed 0 only
    outs = job_outputs(proc.stdout)
    assert runs_of(outs["train"]) == {(c, s) for c in CELLS for s in (0, 1, 2)}
    assert runs_of(outs["evaluate"]) == {(c, s) for c in CELLS for s in (0, 1, 2)}
    # seed N > 0 trains with --seed N into results/seed<N>/<cell>; seed 0 runs the paper
    # DAG's command, unchanged (no --seed)
    for line in shell_commands(proc.stdout, "train"):
        m = re.search(r"--out results/(seed(\d+)/)?[\w-]+ ", line)
        seed = int(m.group(2)) if m.group(2) else 0
        assert (f"--seed {seed} " in line) == (seed > 0), line
    # the default config is the paper's single run: 12 trainings
    assert job_counts(snakemake(workdir, "-n", "--cores", "all").stdout)["train"] == 12
    # the significance report of both tables with three seeds needs the same 36 runs
    proc = snakemake(workdir, "-n", "-p", "reports/significance.md", "--cores", "all",
                     "--config", "seeds=[0,1,2]")
    counts = job_counts(proc.stdout)
    assert counts["train"] == 36 and counts["significance"] == 1 and "report" not in counts
    assert "--seeds 0,1,2 " in proc.stdout and "--resamples 1000 " in proc.stdout


def test_adding_seeds_to_a_complete_run_schedules_only_the_new_seeds(workdir):
    complete_outputs(workdir, *SMOKE)                                   # seed 0, every cell, complete
    # (--config replaces the profile's `config:`, so profile=smoke is repeated)
    proc = snakemake(workdir, "-n", *SMOKE, "--config", "profile=smoke", "seeds=[0,1,2]")
    counts = job_counts(proc.stdout)
    assert counts == {"train": 24, "evaluate": 24, "all": 1}, counts   # no table, no Figure 3
    outs = job_outputs(proc.stdout)
    assert runs_of(outs["train"]) == {(c, s) for c in CELLS for s in (1, 2)}

    # the same for the seed reports: the runs of seeds 0 and 1 complete, then seed 2 added.
    # (--touch records no provenance, so the complete reports themselves are left out here;
    # tests/pipeline/test_seed_reports_run.py shows a real run rerendering them, params changed)
    reports = ("reports/significance.md", "reports/proposals.md", "reports/ablations.md")
    runs = [BASE, BASE_RPN, *VARIANTS]
    complete_outputs(workdir, *SMOKE, *[f"results/{'' if s == 0 else f'seed{s}/'}{c}/metrics.json"
                                 for c in runs for s in (0, 1)])
    proc = snakemake(workdir, "-n", *SMOKE, *reports, "--config", "profile=smoke",
                     "seed_reports={seeds: [0, 1, 2], pairs: [voc0712-faster_rcnn-vgg16-rpn]}")
    counts = job_counts(proc.stdout)
    assert counts == {"train": 7, "evaluate": 7, "significance": 1, "proposals": 1,
                      "ablations": 1}, counts
    assert runs_of(job_outputs(proc.stdout)["train"]) == {(c, 2) for c in runs}


def test_ablations_target_builds_exactly_the_variants_and_their_base(workdir):
    proc = snakemake(workdir, "-n", "-p", "reports/ablations.md", "--cores", "all")
    counts = job_counts(proc.stdout)
    assert counts.keys() == {"download", "data_check", "train", "evaluate", "ablations"}
    assert counts["data_check"] == 1          # the one dataset these runs read (voc0712)
    expected = {(c, 0) for c in [BASE, BASE_RPN, *VARIANTS]}
    outs = job_outputs(proc.stdout)
    assert runs_of(outs["train"]) == expected and runs_of(outs["evaluate"]) == expected
    assert len(VARIANTS) == 5 and all(v.startswith(BASE + "--") for v in VARIANTS)
    # the smoke profile: the same runs for each of its seed_reports.seeds (0, 1)
    proc = snakemake(workdir, "-n", "-p", *SMOKE, "reports/ablations.md")
    assert runs_of(job_outputs(proc.stdout)["train"]) == {(c, s) for c, _ in expected for s in (0, 1)}
    assert job_counts(proc.stdout) == {"synth": 1, "data_check": 1, "train": 14, "evaluate": 14,
                                       "ablations": 1}
    assert "report ablations --results results --params params --profile smoke --seeds 0,1 " \
        in proc.stdout


def test_smoke_seed_reports_read_their_configured_seeds_and_pair(workdir):
    proc = snakemake(workdir, "-n", "-p", *SMOKE, "reports/significance.md", "reports/proposals.md")
    counts = job_counts(proc.stdout)
    assert counts == {"synth": 1, "data_check": 1, "train": 4, "evaluate": 4, "significance": 1,
                      "proposals": 1}
    assert runs_of(job_outputs(proc.stdout)["train"]) == {(c, s) for c in (BASE, BASE_RPN)
                                                           for s in (0, 1)}
    for rule in ("significance", "proposals"):
        assert re.search(rf"report {rule} .*--seeds 0,1 --pairs {BASE_RPN} ", proc.stdout), rule


def test_seed_config_is_validated(workdir):
    for bad, key in (("seeds=[-1]", "seeds"), ("seeds=[0,0]", "seeds"),
                     ("seed_reports={seeds: null, pairs: [nope-rpn], resamples: 1000, "
                      "bootstrap_seed: 0}", "pairs"),
                     ("seed_reports={seeds: null, pairs: all, resamples: 10, bootstrap_seed: 0}",
                      "resamples")):
        proc = snakemake(workdir, "-n", "--cores", "1", "--config", bad, check=False)
        assert proc.returncode != 0 and key in proc.stdout + proc.stderr, bad
        assert "Job stats" not in proc.stdout + proc.stderr, bad
    # a well-formed RPN cell id that is not the RPN cell of a paper pair: named with the key
    proc = snakemake(workdir, "-n", "--cores", "1", "--config",
                     "seed_reports={pairs: [voc07-faster_rcnn-vgg16-rpn]}", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "seed_reports.pairs" in out and "voc07-faster_rcnn-vgg16-rpn" in out


def test_slurm_profile_submits_each_seed_as_its_own_job_with_its_resources(workdir):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    env = {"KLRPN_SLURM_ACCOUNT": "acct", "KLRPN_SLURM_PARTITION": "cpu",
           "KLRPN_SLURM_GPU_PARTITION": "gpu", "KLRPN_SLURM_GPU_MODEL": "a100"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        proc = snakemake(workdir, "-n", "--profile", "workflow/profiles/slurm",
                         "--config", "seeds=[0,1,2]", "--", "reports/table2.md",
                         *[f"results/seed{s}/{c}/metrics.json" for c in CELLS[6:] for s in (1, 2)])
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    jobs = proc.stdout.split("\nrule ")
    train = [j for j in jobs if j.startswith("train:")]
    assert len(train) == 18 and job_counts(proc.stdout)["train"] == 18
    for job in train:
        out = re.search(r"output: (\S+)/model_final.pt", job).group(1)
        res = re.search(r"resources: (.*)", job).group(1)
        # every (cell, seed) its own job, asking for its cell's GPU, partition and size
        assert "slurm_partition=gpu" in res and "gpu=1" in res and "gpu_model=a100" in res, job
        assert "slurm_account=acct" in res, job
        cell = Path(out).name
        mem = {"voc0712": "mem_mb=48000", "voc07": "mem_mb=32000"}[cell.split("-")[0]]
        assert mem in res, job
    assert {re.search(r"output: (\S+)/model_final.pt", j).group(1) for j in train} == {
        f"results/{c}" if s == 0 else f"results/seed{s}/{c}" for c in CELLS[6:] for s in (0, 1, 2)}


def test_dvc_has_a_stage_per_cell_and_seed(tmp_path):
    """dvc-vars.yaml seeds: [0, 1, 2] and `klrpn pipeline dvc-runs` add train@<cell>-seed<N> /
    evaluate@<cell>-seed<N> (results/seed<N>/<cell>); the seed-0 stages keep their names and
    paths."""
    for name in ("dvc.yaml", "data.dvc"):
        shutil.copy2(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "params", tmp_path / "params")
    shutil.copytree(REPO / "workflow", tmp_path / "workflow")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    run = lambda *a: subprocess.run(a, cwd=tmp_path, env=env, capture_output=True,  # noqa: E731
                                    text=True, timeout=300)
    assert run("git", "init", "-q").returncode == 0 and run(DVC, "init", "-q").returncode == 0

    def stages():
        proc = run(DVC, "dag", "--dot")
        assert proc.returncode == 0, proc.stderr
        return set(re.findall(r'"([\w@.-]+)"', proc.stdout))

    default = stages()
    assert {f"train@{c}" for c in CELLS} <= default and not any("seed" in s for s in default)
    vars_file = tmp_path / "workflow/config/dvc-vars.yaml"
    data = yaml.safe_load(vars_file.read_text())
    assert data["seeds"] == [0]
    vars_file.write_text(vars_file.read_text().replace("seeds: [0]", "seeds: [0, 1, 2]"))
    check = run(sys.executable, "-m", "klrpn.cli", "pipeline", "dvc-runs", "--check")
    assert check.returncode == 1 and "not current" in check.stderr
    assert run(sys.executable, "-m", "klrpn.cli", "pipeline", "dvc-runs").returncode == 0
    seeded = stages()
    per_seed = {f"{r}@{c}-seed{s}" for r in ("train", "evaluate") for c in CELLS for s in (1, 2)}
    assert seeded - default == per_seed and default <= seeded
    status = run(DVC, "status", "dvc.yaml").stdout
    for c in CELLS:
        assert f"train@{c}-seed2:" in status and f"results/seed2/{c}/model_final.pt" in status
