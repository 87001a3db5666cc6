"""The ``klrpn report`` command line."""

from __future__ import annotations

import pytest

from klrpn.cli import main
from klrpn.layout import METRICS_NAME, run_file


def test_report_command_rejects_bad_seeds(capsys):
    with pytest.raises(SystemExit):
        main(["report", "significance", "--seeds", "0,x", "--out", "x.md"])
    assert "--seeds" in capsys.readouterr().err


def test_report_command_names_the_bad_file_and_exits_2(tmp_path, capsys):
    bad = run_file(tmp_path / "results", "voc07-rfcn-resnet101-rpn", 0, METRICS_NAME)
    bad.parent.mkdir(parents=True)
    bad.write_text("{}")
    assert main(["report", "table2", "--results", str(tmp_path / "results"),
                 "--out", str(tmp_path / "t.md")]) == 2
    assert f"klrpn report: {bad}: key '<top level>'" in capsys.readouterr().err
    assert not (tmp_path / "t.md").exists()
