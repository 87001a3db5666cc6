"""A real smoke run through the workflow: one RPN and one KL-RPN cell, trained, evaluated and
rendered into a (partial) Table 2. The fastest pair of cells (R-FCN on VOC07) keeps it short."""

import json
import os
import subprocess
import sys

import pytest

from conftest import BIN, snakemake

CELLS = ["voc07-rfcn-resnet101-rpn", "voc07-rfcn-resnet101-klrpn"]


@pytest.mark.slow
def test_smoke_rpn_and_klrpn_cells_to_a_rendered_table(workdir):
    targets = [f"results/{cell}/metrics.json" for cell in CELLS]
    snakemake(workdir, "--profile", "workflow/profiles/smoke", *targets, timeout=900)
    for cell in CELLS:
        metrics = json.loads((workdir / "results" / cell / "metrics.json").read_text())
        assert metrics["cell"] == cell and metrics["profile"] == "smoke"
        assert 0.0 <= metrics["metrics"]["mAP"] <= 100.0
        assert metrics["proposals"]["AR@100"] > 0
    # PYTHONPATH (when set) keeps the klrpn under test, as snakemake's jobs got it
    env = {"PATH": str(BIN), **{k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}}
    subprocess.run([str(BIN / "klrpn"), "report", "table2", "--results", "results", "--profile", "smoke",
                    "--out", "reports/table2.md"], cwd=workdir, check=True, env=env,
                   capture_output=True, text=True)
    table = (workdir / "reports" / "table2.md").read_text()
    assert "SMOKE RUN" in table
    rows = [line for line in table.splitlines() if line.startswith("| R-FCN")]
    assert len(rows) == 2 and all("—" not in row.split("|")[5] for row in rows)
    assert table.count("| —") >= 4  # the four Faster R-CNN rows were not run: rendered as missing
    # one recipe line per cell: the R-FCN pair trained multi-scale, as the smoke profile says
    recipe = [line for line in table.splitlines() if line.startswith("- `voc07-rfcn")]
    assert len(recipe) == 2 and all("(metrics.json)" in line for line in recipe)
    assert all("train short side one of 96/112/128/144/160 per batch, test 128" in line for line in recipe)
