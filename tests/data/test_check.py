"""`klrpn data check`: what each cell of a profile needs downloaded, and the message when it is not
there (the first stage of dvc.yaml)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from klrpn.cli import main
from klrpn.config import list_cells
from klrpn.data.check import DataCheckError, ImageEntry, check, image_problem, recorded

from helpers import PARAMS, break_three_images

COCO = ["coco-annotations2017", "coco-train2017", "coco-val2017", "coco-test2017", "coco-test-info2017"]
VOC = ["voc2007-trainval", "voc2007-test", "voc2012-trainval"]


def touch_markers(root: Path, names: list[str]) -> None:
    for name in names:
        marker = root / "data" / ".klrpn-downloads" / f"{name}.json"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("{}")


def test_paper_profile_without_data_names_every_marker_and_the_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataCheckError) as err:
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
    with pytest.raises(DataCheckError) as err:
        check("paper", PARAMS)
    message = str(err.value)
    assert "5 of its download markers missing, 6 cells affected" in message
    assert "  klrpn data download coco --root data\n" in message
    assert "voc2007" not in message and "vgg16.json" not in message


def test_complete_data_lists_each_cells_markers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch_markers(tmp_path, COCO + VOC + ["vgg16", "resnet101"])
    report = check("paper", PARAMS, files=False)
    assert report["images_checked"] == 0
    assert report["profile"] == "paper" and report["synthetic"] is False
    assert len(report["cells"]) == 12
    marker = "data/.klrpn-downloads/{}.json".format
    assert report["cells"]["voc07-rfcn-resnet101-rpn"] == [marker(n) for n in VOC + ["resnet101"]]
    assert report["cells"]["coco-faster_rcnn-vgg16-klrpn"] == [marker(n) for n in COCO + ["vgg16"]]


def test_smoke_profile_needs_no_download(smoke_data):
    report = check("smoke", PARAMS)
    assert report["synthetic"] is True
    assert report["cells"] == {c["id"]: [] for c in list_cells(PARAMS)}


def test_cli_fails_without_writing_then_writes_the_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "results" / "data-check.json"
    args = ["data", "check", "--profile", "paper", "--params", str(PARAMS), "--out", str(out),
            "--markers-only"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("klrpn data check: the paper profile reads downloaded data that is not there")
    assert not out.exists()
    touch_markers(tmp_path, COCO + VOC + ["vgg16", "resnet101"])
    assert main(args) == 0
    assert "all 10 download markers present" in capsys.readouterr().out
    assert json.loads(out.read_text()) == recorded(check("paper", PARAMS, files=False))
    assert "disk_needed_bytes" not in json.loads(out.read_text())
    assert [p.name for p in out.parent.iterdir()] == ["data-check.json"]   # no temporary left


def test_cli_names_an_unknown_profile(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["data", "check", "--profile", "nope", "--params", str(PARAMS)]) == 1
    assert "nope" in capsys.readouterr().err


# --- the images, weights and disk of a profile -----------------------------------------------

@pytest.fixture
def smoke_data(synth_root, tmp_path, monkeypatch):
    """A private copy of the smoke profile's synthetic data, in the working directory."""
    shutil.copytree(synth_root, tmp_path / "synthetic")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "synthetic"


def test_sound_smoke_data_passes_and_counts_every_image(smoke_data):
    report = check("smoke", PARAMS)
    assert report["images_checked"] == 640   # coco train + val, VOC 2007 trainval + test, 2012 trainval


def test_every_broken_image_is_one_line_naming_it(smoke_data):
    broken = break_three_images(smoke_data)
    with pytest.raises(DataCheckError) as err:
        check("smoke", PARAMS)
    problems = dict(p.split(": ", 1) for p in err.value.problems)
    assert sorted(problems) == sorted(broken)
    gone, cut, resized = (problems[p] for p in broken)
    assert gone.startswith("missing (listed in synthetic/coco/annotations/instances_train2017.json)")
    assert cut.startswith("not a readable image")
    assert resized.startswith("image is 187x120 but synthetic/VOCdevkit/VOC2012/Annotations/"
                              "2012_000001.xml says 999x120")
    assert all(p.endswith("delete its folder and run `klrpn data synth`") for p in problems.values())
    assert str(err.value).startswith("the smoke profile's data has 3 problem(s):\n")


def test_a_jpeg_cut_after_its_header_is_found(smoke_data, tmp_path):
    path = smoke_data / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000005.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    entry = ImageEntry(path, 0, 0, "x.xml")
    from PIL import Image
    with Image.open(path) as im:          # the header alone reads fine ...
        entry = ImageEntry(path, im.width, im.height, "x.xml")
    assert image_problem(entry, "fix it") == (            # ... the missing end marker does not
        f"{path}: JPEG file cut short ({len(data) // 2} bytes, no end marker); fix it")
    path.write_bytes(data + b"\0" * 16)                    # zero padding after the end is fine
    assert image_problem(entry) is None


def test_cli_lists_all_problems_and_writes_nothing(smoke_data, capsys):
    broken = break_three_images(smoke_data)
    out = smoke_data.parent / "results" / "data-check.json"
    assert main(["data", "check", "--profile", "smoke", "--params", str(PARAMS), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert sorted(line.split(":")[0].strip() for line in err.splitlines()[1:]) == sorted(broken)
    assert not out.parent.exists()


def test_weights_of_the_wrong_sha256_are_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch_markers(tmp_path, COCO + VOC + ["vgg16", "resnet101"])
    weights = tmp_path / "data" / "weights"
    weights.mkdir()
    (weights / "vgg16-397923af.pth").write_bytes(b"not the weights")
    with pytest.raises(DataCheckError) as err:
        check("paper", PARAMS)
    assert err.value.problems[-2:] == [
        "data/weights/vgg16-397923af.pth: sha256 is not the manifest's (397923af...); delete it "
        "and its marker and run `klrpn data download vgg16`",
        "data/weights/resnet101-63fe2227.pth: ImageNet weights missing although their download "
        "marker is there; run `klrpn data download resnet101 --root data` after deleting the marker"]


def test_too_little_disk_for_the_checkpoints_is_one_line(smoke_data, monkeypatch):
    from klrpn.data import check as check_module

    results = smoke_data.parent / "results"
    done = results / "voc07-rfcn-resnet101-rpn"
    done.mkdir(parents=True)
    (done / "model_final.pt").write_bytes(b"")     # a finished run needs no more room
    report = check("smoke", PARAMS, results=results)
    from klrpn.config import list_cells, load_cell
    from klrpn.cost import peak_bytes
    cfgs = [load_cell(c["id"], "smoke", PARAMS) for c in list_cells(PARAMS)]
    expected = sum(peak_bytes(c, c["train"]["gpus"]) for c in cfgs
                   if c["cell"] != "voc07-rfcn-resnet101-rpn")
    assert report["disk_needed_bytes"] == expected

    usage = check_module.shutil.disk_usage(smoke_data)
    monkeypatch.setattr(check_module.shutil, "disk_usage",
                        lambda path: usage._replace(free=expected - 1))
    with pytest.raises(DataCheckError) as err:
        check("smoke", PARAMS, results=results)
    (line,) = err.value.problems
    assert line.startswith(f"{results}: the run's checkpoints need about {expected / 2**30:.1f} GiB "
                           f"but its disk has {(expected - 1) / 2**30:.1f} GiB free")
