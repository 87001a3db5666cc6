"""`klrpn data check`: what each cell of a profile needs downloaded, and the message when it is not
there (the first stage of dvc.yaml)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from klrpn.cli import main
from klrpn.config import list_cells
from klrpn.data.check import DataMissingError, check

from helpers import PARAMS

COCO = ["coco-annotations2017", "coco-train2017", "coco-val2017", "coco-test2017", "coco-test-info2017"]
VOC = ["voc2007-trainval", "voc2007-test", "voc2012-trainval"]


def touch_markers(root: Path, names: list[str]) -> None:
    for name in names:
        marker = root / "data" / ".klrpn-downloads" / f"{name}.json"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("{}")


def test_paper_profile_without_data_names_every_marker_and_the_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataMissingError) as err:
        check("paper", PARAMS)
    message = str(err.value)
    assert "10 of its download markers missing, 12 cells affected" in message
    for name in COCO + VOC + ["vgg16", "resnet101"]:
        assert f"data/.klrpn-downloads/{name}.json" in message, name
    assert "  klrpn data download coco voc weights --root data\n" in message
    assert message.endswith("dvc pull data.dvc")


def test_only_what_is_missing_is_asked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch_markers(tmp_path, VOC + ["vgg16", "resnet101"])
    with pytest.raises(DataMissingError) as err:
        check("paper", PARAMS)
    message = str(err.value)
    assert "5 of its download markers missing, 6 cells affected" in message
    assert "  klrpn data download coco --root data\n" in message
    assert "voc2007" not in message and "vgg16.json" not in message


def test_complete_data_lists_each_cells_markers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch_markers(tmp_path, COCO + VOC + ["vgg16", "resnet101"])
    report = check("paper", PARAMS)
    assert report["profile"] == "paper" and report["synthetic"] is False
    assert len(report["cells"]) == 12
    marker = "data/.klrpn-downloads/{}.json".format
    assert report["cells"]["voc07-rfcn-resnet101-rpn"] == [marker(n) for n in VOC + ["resnet101"]]
    assert report["cells"]["coco-faster_rcnn-vgg16-klrpn"] == [marker(n) for n in COCO + ["vgg16"]]


def test_smoke_profile_needs_no_download(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = check("smoke", PARAMS)
    assert report["synthetic"] is True
    assert report["cells"] == {c["id"]: [] for c in list_cells(PARAMS)}


def test_cli_fails_without_writing_then_writes_the_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "results" / "data-check.json"
    args = ["data", "check", "--profile", "paper", "--params", str(PARAMS), "--out", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("klrpn data check: the paper profile reads downloaded data that is not there")
    assert not out.exists()
    touch_markers(tmp_path, COCO + VOC + ["vgg16", "resnet101"])
    assert main(args) == 0
    assert "all 10 download markers present" in capsys.readouterr().out
    assert json.loads(out.read_text()) == check("paper", PARAMS)
    assert [p.name for p in out.parent.iterdir()] == ["data-check.json"]   # no temporary left


def test_cli_names_an_unknown_profile(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["data", "check", "--profile", "nope", "--params", str(PARAMS)]) == 1
    assert "nope" in capsys.readouterr().err
