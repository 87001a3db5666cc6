"""A real smoke run of the three seed reports (issue 10) through the workflow: `snakemake
--profile workflow/profiles/smoke reports/significance.md reports/proposals.md
reports/ablations.md`, with the smoke schedule shortened (params/ copied and edited, as
tests/train/test_smoke_cells.py does): 14 trainings (the ablations' base pair and the 5
variants, seeds 0 and 1), their evaluations, and all three reports with numbers in every row.
Then adding seed 2 schedules only seed 2's runs and the three reports."""

from __future__ import annotations

import csv
import re

import pytest
from conftest import job_counts, job_outputs, snakemake
from helpers import shorten_smoke_profile

pytestmark = pytest.mark.slow

SMOKE = ("--profile", "workflow/profiles/smoke")
REPORTS = ("reports/significance.md", "reports/proposals.md", "reports/ablations.md")
ITERS = 8
NUMBER = r"[+-]?\d+(\.\d+)?"


def table_rows(text: str) -> list[list[str]]:
    """The body rows of every markdown table in ``text``, as lists of stripped cells."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append(cells)
    # drop header rows (each is followed by a |---| line, skipped above): the headers are the
    # rows whose first cell names a column
    return [r for r in rows if r[0] not in ("Table", "cell", "Factor")]


def test_three_seed_reports_render_with_numbers_in_every_row(workdir):
    shorten_smoke_profile(workdir / "params", length=ITERS, steps=[ITERS * 3 // 4], warmup_iters=0,
                          checkpoint_every=ITERS, train={"batch_size": 2},
                          eval={"latency_images": 1, "latency_warmup": 0})
    snakemake(workdir, *SMOKE, *REPORTS, timeout=900)

    significance = (workdir / "reports/significance.md").read_text()
    proposals = (workdir / "reports/proposals.md").read_text()
    ablations = (workdir / "reports/ablations.md").read_text()
    for text in (significance, proposals, ablations):
        assert "SMOKE RUN on synthetic data" in text
    assert (workdir / "reports/proposals.png").stat().st_size > 10_000

    # significance: the configured pair only, 2 seeds, 1000 resamples, a verdict
    (row,) = table_rows(significance)
    assert row[:5] == ["Table 2", "Faster R-CNN", "VGG-16", "07+12", "mAP"], row
    paper_delta, ours, seeds, ci, verdict = row[5:]
    assert re.fullmatch(NUMBER, paper_delta)
    assert re.fullmatch(rf"{NUMBER} ± \d+\.\d+", ours) and seeds == "2"
    assert re.fullmatch(rf"\[{NUMBER}, {NUMBER}\]", ci)
    assert verdict in ("KL-RPN better", "no difference detectable", "RPN better")
    assert "Only 1 of the 6 pairs" in significance and "bootstrap resamples: 1000" in significance
    with open(workdir / "reports/significance.csv", newline="") as f:
        (rec,) = list(csv.DictReader(f))
    assert rec["n_seeds"] == "2" and rec["resamples"] == "1000" and rec["verdict"] == verdict

    # proposals: every row of the AR, recall-vs-IoU and rho tables has a number in each column
    rows = table_rows(proposals)
    assert len(rows) == 2 + 4 + 2       # AR: 2 cells; recall vs IoU: 2 cells x {300, 1000}; rho
    for r in rows:
        assert r[0].strip("`") in ("voc0712-faster_rcnn-vgg16-rpn", "voc0712-faster_rcnn-vgg16-klrpn")
        for cell in r[1:]:
            assert re.fullmatch(rf"{NUMBER}( ± \d+\.\d+)?", cell), r

    # ablations: the base and the five variants, each with its metric, Δ, seeds and seed noise
    rows = table_rows(ablations)
    assert len(rows) == 6
    for r in rows:
        factor, variant, metric, delta, seeds, noise = r
        assert re.fullmatch(NUMBER, metric) and seeds == "2", r
        assert re.fullmatch(NUMBER, delta) or delta == "0 (reference)", r
        assert re.fullmatch(r"± \d+\.\d+ \(base, 2 seeds\)", noise), r
    assert re.search(rf"is {NUMBER} ± \d+\.\d+ over 2 seed", ablations)

    # a third seed added to this complete run: only seed 2's runs, then the three reports (the
    # data check of the first run stays: it does not run again)
    proc = snakemake(workdir, "-n", *SMOKE, *REPORTS, "--config", "profile=smoke",
                     "seed_reports={seeds: [0, 1, 2], pairs: [voc0712-faster_rcnn-vgg16-rpn]}")
    assert job_counts(proc.stdout) == {"train": 7, "evaluate": 7, "significance": 1,
                                       "proposals": 1, "ablations": 1}
    assert all("/seed2/" in p for p in job_outputs(proc.stdout)["train"])
