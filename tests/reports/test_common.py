"""The shared metrics reader (klrpn.reports.common), run folders and atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from klrpn.atomic import atomic_output
from klrpn.layout import run_dir
from klrpn.reports import common
from report_runs import table_metrics, write_metrics

CELL = "voc07-rfcn-resnet101-rpn"


def test_run_dir_layout():
    assert run_dir("results", "c", 0) == Path("results/c")
    assert run_dir("r", "c", 2) == Path("r/seed2/c")
    with pytest.raises(ValueError):
        run_dir("r", "c", -1)


def test_collector_reads_seed_folders_and_marks_absent_runs(tmp_path):
    write_metrics(tmp_path, table_metrics(CELL, 2, profile="smoke"), seed=0)
    seed2 = table_metrics(CELL, 2, profile="smoke")
    seed2["provenance"]["seed"] = 2
    write_metrics(tmp_path, seed2, seed=2)
    runs, profile = common.collect_runs(tmp_path, [CELL, "voc07-rfcn-resnet101-klrpn"], [0, 1, 2])
    assert profile == "smoke"
    assert {k for k, m in runs.items() if m is not None} == {(CELL, 0), (CELL, 2)}
    assert runs[(CELL, 2)]["provenance"]["seed"] == 2 and len(runs) == 6
    assert common.collect_runs(tmp_path / "none", [CELL], [0]) == ({(CELL, 0): None}, None)


def test_collector_rejects_an_invalid_metrics_json_naming_the_file(tmp_path):
    bad = table_metrics(CELL, 2)
    del bad["provenance"]
    path = write_metrics(tmp_path, bad, seed=3)
    with pytest.raises(common.ReportError) as e:
        common.collect_runs(tmp_path, [CELL], [3])
    assert str(e.value).startswith(f"{path}: key '<top level>': 'provenance' is a required property")
    path.write_text("[1,")
    with pytest.raises(common.ReportError, match=rf"^{path}: not valid JSON"):
        common.collect_runs(tmp_path, [CELL], [3])


def test_collector_checks_cell_seed_and_profile(tmp_path):
    path = write_metrics(tmp_path, table_metrics(CELL, 2), seed=1)        # provenance.seed 0
    with pytest.raises(common.ReportError, match=r"seed1/.*key 'provenance.seed' is 0.*seed 1's"):
        common.collect_runs(tmp_path, [CELL], [1])
    assert common.collect_runs(tmp_path, [CELL], [1], check_seed=False)[1] == "paper"
    with pytest.raises(common.ReportError, match="key 'profile' is 'paper' but --profile is 'smoke'; "
                                                 "a report shows one profile"):
        common.collect_runs(tmp_path, [CELL], [1], profile="smoke", check_seed=False)
    with pytest.raises(common.ReportError, match="key 'table' is 2, expected 1"):
        common.collect_runs(tmp_path, [CELL], [1], table=1, check_seed=False)
    path.write_text(json.dumps(table_metrics("voc07-rfcn-resnet101-klrpn", 2)))
    with pytest.raises(common.ReportError, match=f"key 'cell' is 'voc07-rfcn-resnet101-klrpn', expected '{CELL}'"):
        common.collect_runs(tmp_path, [CELL], [1])


def test_formats():
    assert common.fmt(None) == common.fmt(float("nan")) == "—" and common.fmt(1.25, 1) == "1.2"
    assert common.fmt_signed(0.5) == "+0.5" and common.fmt_signed(None) == "—"
    assert common.mean_std_text([]) == "—" and common.mean_std_text([1.0]) == "+1.0 (one seed)"
    assert common.mean_std_text([1.0, 3.0], 2) == "+2.00 ± 1.41"
    assert common.sample_std([1.0]) is None and common.seed_list([2, 0, 2]) == [0, 2]
    assert common.lookup({"a": {"b": 1}}, ("a", "b")) == 1 and common.lookup(None, ("a",)) is None


def test_atomic_output_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "x.md"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("new, half")
            raise RuntimeError
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_collector_does_not_mix_runs_of_other_overrides(tmp_path):
    own = table_metrics(CELL, 2)
    other = table_metrics("voc07-rfcn-resnet101-klrpn", 2)
    other["provenance"]["overrides"] = {"train.lr": 0.002}   # trained with --set into its own folder
    write_metrics(tmp_path, own)
    path = write_metrics(tmp_path, other)
    with pytest.raises(common.ReportError) as err:
        common.collect_runs(tmp_path, [CELL, "voc07-rfcn-resnet101-klrpn"])
    assert str(err.value) == (
        f"{path}: key 'provenance.overrides' is {{'train.lr': 0.002}} but "
        f"{run_dir(tmp_path, CELL) / 'metrics.json'} has none; a report shows runs of one set of "
        "--set overrides (each set trains into its own results/set-<hash>/)")
    own["provenance"]["overrides"] = {"train.lr": 0.002}     # a results root of one override set
    write_metrics(tmp_path, own)
    found, _ = common.collect_runs(tmp_path, [CELL, "voc07-rfcn-resnet101-klrpn"])
    assert all(m is not None for m in found.values())
