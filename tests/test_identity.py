"""Run identity (klrpn.identity): what changes it and what does not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from klrpn import identity
from klrpn.config import load_cell
from klrpn.data.synthetic import generate

from helpers import REPO

SIZES = {"coco/train2017": 4, "coco/val2017": 2, "VOC2007/trainval": 3, "VOC2007/test": 2,
         "VOC2012/trainval": 2}


@pytest.fixture
def code_copy(tmp_path):
    root = tmp_path / "checkout"
    shutil.copytree(REPO / "klrpn", root / "klrpn", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_code_hash_follows_training_code_only(code_copy):
    before = identity.code_hash(code_copy)
    assert before == identity.code_hash(REPO)
    (code_copy / "klrpn" / "launch.py").write_text("# launching is not training code\n")
    (code_copy / "klrpn" / "data" / "download.py").write_text("# neither is downloading\n")
    (code_copy / "klrpn" / "data" / "scoring.py").write_text("# nor evaluation\n")
    assert identity.code_hash(code_copy) == before
    with open(code_copy / "klrpn" / "losses.py", "a") as f:
        f.write("\nGAMMA_TYPO = 0.5\n")
    assert identity.code_hash(code_copy) != before
    (code_copy / "klrpn" / "models" / "rpn.py").unlink()
    with pytest.raises(FileNotFoundError, match="rpn.py: training code file missing"):
        identity.code_hash(code_copy)


def test_code_hash_ignores_docstrings_comments_and_layout(code_copy):
    before = identity.code_modules(code_copy)
    path = code_copy / "klrpn" / "losses.py"
    text = path.read_text()
    # another module docstring, a comment, blank lines, a reworded function docstring, a
    # re-wrapped call
    edited = '"""Another docstring."""\n# a comment\n\n\n' + text[text.index('"""', 3) + 3:]
    edited = edited.replace("Eq. 7, the loss of a positive anchor", "Eq. 7: a positive anchor's loss")
    edited = edited.replace("mu_target: Tensor, gamma", "mu_target: Tensor,\n                gamma")
    assert edited.count("Eq. 7: a positive") == 1 and edited.count("Tensor,\n ") == 1
    path.write_text(edited)
    assert identity.code_modules(code_copy) == before
    path.write_text(edited.replace("return", "return -1 *", 1))
    after = identity.code_modules(code_copy)
    assert [rel for rel in after if after[rel] != before[rel]] == ["klrpn/losses.py"]


def test_identity_names_the_changed_modules():
    modules = identity.code_modules(REPO)
    old = identity.combine("a" * 64, "d" * 64, modules)
    assert old["code_hash"] == identity.code_hash(REPO) and old["code_modules"] == modules
    changed = {**modules, "klrpn/models/rpn.py": "0" * 64}
    new = identity.combine("a" * 64, "d" * 64, changed)
    assert identity.differences(old, new) == ["code"]
    assert identity.changed_modules(old, new) == ["klrpn/models/rpn.py"]
    assert identity.describe_differences(old, new) == (
        "other code (klrpn/models/rpn.py changed since this run was made)")
    # a run recorded without per-module hashes still gets a message
    legacy = {k: v for k, v in old.items() if k != "code_modules"}
    legacy["code_hash"] = "c" * 64
    assert "records no per-module code hashes" in identity.describe_differences(legacy, new)
    assert identity.describe_differences(old, old) == "the same params, data and code"


def test_training_code_lists_every_module_of_the_training_packages():
    from test_architecture import klrpn_imports

    listed = set(identity.TRAINING_CODE)
    # not what the weights depend on: model-info, the downloads, the synthetic data (its marker
    # is in the data fingerprint), the pre-flight, annotation files, evaluation
    excluded = {"models": {"info.py"},
                "data": {"download.py", "synthetic.py", "check.py", "files.py", "scoring.py"}}
    for package, left_out in excluded.items():
        modules = {f"klrpn/{package}/{p.name}" for p in (REPO / "klrpn" / package).glob("*.py")
                   if p.name not in left_out}
        assert modules <= listed, modules - listed
    # ... and every model module the listed ones import is listed too
    for module in listed:
        imported = {t for t in klrpn_imports((REPO / module).read_text()) if t.startswith("klrpn/models/")}
        assert imported <= listed, (module, imported - listed)


@pytest.mark.parametrize("cell", ["coco-faster_rcnn-vgg16-rpn", "voc07-rfcn-resnet101-klrpn"])
def test_data_fingerprint_follows_annotations_and_markers_not_images(tmp_path, cell):
    root = tmp_path / "synthetic"
    generate(root, seed=0, sizes=SIZES, log=lambda *a: None)
    cfg = load_cell(cell, "smoke", REPO / "params")
    cfg["dataset"]["root"] = str(root / Path(cfg["dataset"]["root"]).name)
    before = identity.data_fingerprint(cfg)
    assert identity.data_markers(cfg) == [root / ".klrpn-synth.json"]

    for jpg in list(root.rglob("*.jpg"))[:2]:        # images are not read
        jpg.write_bytes(b"not an image")
    assert identity.data_fingerprint(cfg) == before

    marker = root / ".klrpn-synth.json"                  # how the data was made
    text = marker.read_text()
    marker.write_text(json.dumps({**json.loads(text), "generator_sha256": "0" * 64}))
    assert identity.data_fingerprint(cfg) != before
    marker.write_text(text)
    assert identity.data_fingerprint(cfg) == before

    if cfg["dataset"]["format"] == "coco":               # a training annotation file
        ann = root / "coco" / "annotations" / "instances_train2017.json"
        test_ann = root / "coco" / "annotations" / "instances_val2017.json"
    else:
        voc = root / "VOCdevkit" / "VOC2007"
        first = (voc / "ImageSets" / "Main" / "trainval.txt").read_text().split()[0]
        ann = voc / "Annotations" / f"{first}.xml"
        test_ann = root / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / "test.txt"
    test_ann.write_text(test_ann.read_text() + " ")      # the test set is not training data
    assert identity.data_fingerprint(cfg) == before
    ann.write_text(ann.read_text() + " ")
    assert identity.data_fingerprint(cfg) != before


def test_download_markers_count_for_real_data(tmp_path):
    cfg = load_cell("voc07-rfcn-resnet101-klrpn", "paper", REPO / "params")
    data = tmp_path / "data"
    generate(data / "synth", seed=0, sizes=SIZES, log=lambda *a: None)
    shutil.move(data / "synth" / "VOCdevkit", data / "VOCdevkit")
    cfg["dataset"]["root"] = str(data / "VOCdevkit")
    cfg["model"]["weights_dir"] = str(data / "weights")
    markers = data / ".klrpn-downloads"
    markers.mkdir()
    (markers / "resnet101.json").write_text('{"sha256": "1"}\n')
    (markers / "voc2007-trainval.json").write_text('{"sha256": "2"}\n')
    before = identity.data_fingerprint(cfg)
    assert [p.name for p in identity.data_markers(cfg)] == ["voc2007-trainval.json", "resnet101.json"]
    (markers / "resnet101.json").write_text('{"sha256": "3"}\n')   # other ImageNet weights
    assert identity.data_fingerprint(cfg) != before


def test_identity_combines_the_three_and_names_differences():
    a = identity.combine("a" * 64, "b" * 64, "c" * 64)
    assert a == identity.combine("a" * 64, "b" * 64, "c" * 64)
    assert len(a["id"]) == 64 and a["id"] != identity.combine("a" * 64, "b" * 64, "d" * 64)["id"]
    assert identity.differences(a, a) == []
    assert identity.differences(a, identity.combine("x" * 64, "b" * 64, "d" * 64)) == ["params", "code"]
    assert identity.differences({"params_hash": "a" * 64}, a) == ["data", "code"]
    assert identity.differences(None, a) == ["params", "data", "code"]
