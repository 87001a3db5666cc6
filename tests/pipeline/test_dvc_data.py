"""data.dvc and the data-check stage on a fresh checkout, without running the pipeline: DVC has
nothing to say about data.dvc (`dvc pull` / `dvc push` of it succeed), and the paper variant without
downloaded data stops at data-check with klrpn's message before any other stage (the full run,
with outputs that must survive, bare `dvc push` and `dvc pull` of a finished run, plain `dvc
status` clean after it, is tests/pipeline/test_dvc_repro.py)."""

from __future__ import annotations

import pytest
from test_dvc_repro import fresh_checkout, paper_variant, run, stages_run

pytest.importorskip("dvc.repo")


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    root = tmp_path_factory.mktemp("dvc-data")
    (root / "repo").mkdir()
    repo = fresh_checkout(root / "repo")
    run(repo, "dvc", "remote", "add", "-d", "local", str(root / "remote"))
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "fresh checkout")
    return repo


def test_dvc_has_nothing_to_say_about_data_dvc(checkout):
    status = run(checkout, "dvc", "status").stdout
    assert "data.dvc" not in status and "synth:" in status     # the pipeline has not run yet
    assert run(checkout, "dvc", "status", "data.dvc").stdout.strip() == \
        "Data and pipelines are up to date."
    for command in ("pull", "push"):     # a hashless entry failed: "No file hash info found"
        proc = run(checkout, "dvc", command, "data.dvc")        # exit status 0, else this fails
        assert "Everything is up to date." in proc.stdout + proc.stderr, command
    assert not (checkout / "data").exists()


def test_paper_mode_without_data_stops_at_data_check(checkout):
    vars_file = checkout / "workflow" / "config" / "dvc-vars.yaml"
    text = vars_file.read_text()
    vars_file.write_text(paper_variant(text))
    try:
        proc = run(checkout, "dvc", "repro", check=False)
    finally:
        vars_file.write_text(text)
    assert proc.returncode != 0
    assert stages_run(proc.stdout) == {"data-check"}
    assert proc.stderr.startswith("klrpn data check: the paper profile reads downloaded data that "
                                  "is not there (10 of its download markers missing, 12 cells")
    assert "\n  klrpn data download coco voc weights --root data\n" in proc.stderr
    assert "ERROR: failed to reproduce 'data-check'" in proc.stderr
    assert not (checkout / "synthetic").exists() and not (checkout / "results").exists()
