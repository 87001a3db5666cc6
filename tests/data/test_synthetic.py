"""The synthetic dataset: determinism, atomic idempotent writing, content."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from klrpn.cli import main
from klrpn.data.synthetic import generate


def tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path, small_sizes):
    generate(tmp_path / "a", seed=3, sizes=small_sizes, log=lambda *_: None)
    generate(tmp_path / "b", seed=3, sizes=small_sizes, log=lambda *_: None)
    generate(tmp_path / "c", seed=4, sizes=small_sizes, log=lambda *_: None)
    a, b, c = (tree_bytes(tmp_path / n) for n in "abc")
    assert len(a) == 2 + 24 + 12 + 2 * (16 + 12 + 12) + 3 + 1  # json, jpgs, xml+jpg, sets, marker
    assert a == b
    assert a.keys() == c.keys() and a != c


def test_second_call_does_nothing_and_says_so(tmp_path, capsys):
    assert main(["data", "synth", "--root", str(tmp_path / "s"), "--seed", "1", "--scale", "0.5"]) == 0
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "s").rglob("*")}
    assert main(["data", "synth", "--root", str(tmp_path / "s"), "--seed", "1", "--scale", "0.5"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "s").rglob("*")}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_refuses_to_overwrite_foreign_folder(tmp_path, small_sizes):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="refusing"):
        generate(tmp_path / "mine", seed=0, sizes=small_sizes, log=lambda *_: None)
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep"


def test_coco_layout_content(synth_root):
    doc = json.loads((synth_root / "coco/annotations/instances_train2017.json").read_text())
    assert [(c["id"], c["name"]) for c in doc["categories"]] == [(1, "circle"), (3, "square"), (7, "triangle")]
    assert len(doc["images"]) == 240
    anns = doc["annotations"]
    assert any(a["iscrowd"] for a in anns) and not all(a["iscrowd"] for a in anns)
    with_objects = {a["image_id"] for a in anns}
    assert 0 < len(doc["images"]) - len(with_objects) < 30  # a few empty images
    assert any(i["height"] > i["width"] for i in doc["images"])  # portrait ones
    assert all(112 <= i["width"] <= 192 and 112 <= i["height"] <= 192 for i in doc["images"])
    for a in anns:
        x, y, w, h = a["bbox"]
        image = next(i for i in doc["images"] if i["id"] == a["image_id"])
        assert w > 0 and h > 0 and x >= 0 and y >= 0
        assert x + w <= image["width"] and y + h <= image["height"]
    val = json.loads((synth_root / "coco/annotations/instances_val2017.json").read_text())
    assert len(val["images"]) == 60
    assert not {i["id"] for i in val["images"]} & {i["id"] for i in doc["images"]}
    assert (synth_root / "coco/val2017" / val["images"][0]["file_name"]).is_file()


def test_voc_layout_content(synth_root):
    devkit = synth_root / "VOCdevkit"
    counts = {f: len((devkit / f).read_text().split()) for f in (
        "VOC2007/ImageSets/Main/trainval.txt", "VOC2007/ImageSets/Main/test.txt",
        "VOC2012/ImageSets/Main/trainval.txt")}
    assert list(counts.values()) == [160, 60, 120]
    flags = [int(o.find("difficult").text) for x in devkit.rglob("*.xml")
             for o in ET.parse(x).findall("object")]
    assert 0 < sum(flags) < len(flags) / 3

