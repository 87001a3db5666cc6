"""The Snakemake workflow: lint, DAG shape per target, config validation, incremental reruns."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import complete_outputs, job_counts, job_outputs, snakemake
from helpers import PARAMS, break_three_images

from klrpn.config import list_cells

CELLS = list_cells(PARAMS)
TABLE = {c["id"]: c["table"] for c in CELLS}


def test_lint_is_clean(workdir):
    proc = snakemake(workdir, "--lint")
    assert "Congratulations, your workflow is in a good condition" in proc.stdout + proc.stderr


def test_paper_dry_run_of_both_tables_lists_12_training_jobs(workdir):
    proc = snakemake(workdir, "-n", "-p", "reports/table1.md", "reports/table2.md", "--cores", "all",
                     "--resources", "gpu=4")
    counts = job_counts(proc.stdout)
    assert counts["train"] == 12 and counts["evaluate"] == 12 and counts["report"] == 2
    assert "figure3" not in counts and "synth" not in counts
    outs = job_outputs(proc.stdout)
    trained = {Path(p).parent.name for p in outs["train"] if p.endswith("model_final.pt")}
    assert trained == set(TABLE)
    assert "--profile paper" in proc.stdout


def test_table1_builds_exactly_what_table1_needs(workdir):
    proc = snakemake(workdir, "-n", "reports/table1.md", "--cores", "all", "--resources", "gpu=4")
    counts = job_counts(proc.stdout)
    outs = job_outputs(proc.stdout)
    trained = {Path(p).parent.name for p in outs["train"] if p.endswith("model_final.pt")}
    assert trained == {c for c, t in TABLE.items() if t == 1}
    assert counts["evaluate"] == 6 and counts["report"] == 1
    downloads = {Path(p).stem for p in outs["download"]}
    # COCO and the two backbones' ImageNet weights; nothing from VOC
    assert {"coco-train2017", "coco-val2017", "coco-annotations2017", "vgg16", "resnet101"} <= downloads
    assert not any(d.startswith("voc") for d in downloads)
    # COCO cells ask for 4 GPUs each (cells' train.gpus)
    assert proc.stdout.count("gpu=4") >= 6


def test_table2_builds_exactly_what_table2_needs(workdir):
    proc = snakemake(workdir, "-n", "reports/table2.md", "--cores", "all", "--resources", "gpu=4")
    outs = job_outputs(proc.stdout)
    trained = {Path(p).parent.name for p in outs["train"] if p.endswith("model_final.pt")}
    assert trained == {c for c, t in TABLE.items() if t == 2}
    assert not any(Path(p).stem.startswith("coco") for p in outs["download"])


def test_resources_option_swallows_a_following_target(workdir):
    """The documented trap: `--resources gpu=4 TARGET` parses TARGET as a resource."""
    proc = snakemake(workdir, "-n", "--cores", "all", "--resources", "gpu=4", "reports/table1.md",
                     check=False)
    assert proc.returncode != 0


def test_smoke_profile_is_synthetic_cpu_and_complete(workdir):
    proc = snakemake(workdir, "-n", "--profile", "workflow/profiles/smoke")
    counts = job_counts(proc.stdout)
    assert counts == {"synth": 1, "data_check": 3, "train": 12, "evaluate": 12, "figure3": 1,
                      "report": 2, "all": 1}
    assert "--profile smoke" in proc.stdout and "gpu=4" not in proc.stdout and "gpu=1" not in proc.stdout
    assert "download" not in counts


def test_broken_data_stops_the_run_before_any_training_job(workdir):
    """The pre-flight: with one image deleted, one truncated and one whose annotation says
    another size, the run stops at the data checks, listing the three files; nothing trains and
    nothing is written under results/."""
    snakemake(workdir, "--profile", "workflow/profiles/smoke", "synthetic")
    broken = break_three_images(workdir / "synthetic")
    # --keep-going: every dataset's check runs (without it Snakemake starts no new job after the
    # first failure); each fails, so no training job can start either way
    proc = snakemake(workdir, "--profile", "workflow/profiles/smoke", "--keep-going", check=False)
    assert proc.returncode != 0
    for path in broken:
        assert path in proc.stdout + proc.stderr, path
    assert "Error in rule data_check" in proc.stdout + proc.stderr
    assert "rule train" not in proc.stdout + proc.stderr
    assert not (workdir / "results").exists() or not any((workdir / "results").rglob("*"))
    assert not (workdir / "logs" / "train").exists()


def test_unknown_config_key_fails_before_any_job_naming_the_key(workdir):
    (workdir / "extra.yaml").write_text("figure3: {rpn: coco-faster_rcnn-vgg16-rpn, "
                                        "klrpn: coco-faster_rcnn-vgg16-klrpn, num_images: 100, "
                                        "device: cpu, colour: red}\n")
    proc = snakemake(workdir, "-n", "--cores", "1", "--configfile", "extra.yaml", check=False)
    assert proc.returncode != 0
    assert "colour" in proc.stdout + proc.stderr
    assert "Job stats" not in proc.stdout + proc.stderr
    proc = snakemake(workdir, "-n", "--cores", "1", "--config", "profle=smoke", check=False)
    assert proc.returncode != 0 and "profle" in proc.stdout + proc.stderr


def test_malformed_cell_fails_before_any_job_naming_it(workdir):
    cells = workdir / "params/cells.yaml"
    text = cells.read_text()
    bad = text.replace("voc07-rfcn-resnet101-klrpn:          {table: 2}",
                       "voc07-rfcn-resnet101-klrpn:          {tabel: 2}")
    assert bad != text
    cells.write_text(bad)
    proc = snakemake(workdir, "-n", "--cores", "1", check=False)
    assert proc.returncode != 0
    assert "cells.voc07-rfcn-resnet101-klrpn" in proc.stdout + proc.stderr
    assert "Job stats" not in proc.stdout + proc.stderr


def test_bad_key_in_a_cell_params_file_names_file_and_key(workdir):
    cell = workdir / "params/cells/voc07-rfcn-resnet101-rpn.yaml"
    cell.write_text(cell.read_text() + "bogus_key: 1\n")
    proc = snakemake(workdir, "-n", "--cores", "1", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "bogus_key" in out and "voc07-rfcn-resnet101-rpn.yaml" in out


def test_figure3_cells_must_match_their_role(workdir):
    (workdir / "f3.yaml").write_text("figure3: {rpn: coco-faster_rcnn-vgg16-klrpn, "
                                     "klrpn: coco-faster_rcnn-vgg16-klrpn, num_images: 100, device: cpu}\n")
    proc = snakemake(workdir, "-n", "--cores", "1", "--configfile", "f3.yaml", check=False)
    assert proc.returncode != 0 and "figure3.rpn" in proc.stdout + proc.stderr


def test_second_run_is_a_no_op_and_one_cell_change_reruns_one_cell(workdir):
    complete_outputs(workdir, "--profile", "workflow/profiles/smoke")
    proc = snakemake(workdir, "-n", "--profile", "workflow/profiles/smoke")
    assert job_counts(proc.stdout) == {}, proc.stdout[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr

    # edit one VOC cell's params: its training, its evaluation, Table 2 -- nothing else
    time.sleep(1.1)
    cell = "voc07-rfcn-resnet101-klrpn"
    f = workdir / f"params/cells/{cell}.yaml"
    f.write_text(f.read_text() + "# touched\n")
    proc = snakemake(workdir, "-n", "--profile", "workflow/profiles/smoke")
    assert job_counts(proc.stdout) == {"train": 1, "evaluate": 1, "report": 1, "all": 1}
    outs = job_outputs(proc.stdout)
    assert outs["train"] == {f"results/{cell}/model_final.pt", f"results/{cell}/train_log.csv"}
    assert outs["report"] == {"reports/table2.md"}

    # a Figure-3 cell also reruns Figure 3 and Table 1
    time.sleep(1.1)
    cell = "coco-faster_rcnn-vgg16-rpn"
    f = workdir / f"params/cells/{cell}.yaml"
    f.write_text(f.read_text() + "# touched\n")
    proc = snakemake(workdir, "-n", "--profile", "workflow/profiles/smoke")
    counts = job_counts(proc.stdout)
    assert counts["train"] == 2 and counts["figure3"] == 1 and counts["report"] == 2

    # once marked done: an edit of a shared file (datasets/voc.yaml) reruns exactly the VOC cells
    snakemake(workdir, "--profile", "workflow/profiles/smoke", "--touch")
    assert job_counts(snakemake(workdir, "-n", "--profile", "workflow/profiles/smoke").stdout) == {}
    time.sleep(1.1)
    f = workdir / "params/datasets/voc.yaml"
    f.write_text(f.read_text() + "# touched\n")
    proc = snakemake(workdir, "-n", "--profile", "workflow/profiles/smoke")
    outs = job_outputs(proc.stdout)
    assert {Path(p).parent.name for p in outs["train"]} == {c for c in TABLE if c.startswith("voc")}, proc.stdout
