"""klrpn.config: merging, validation and error messages that name the file and the key."""

import shutil
from pathlib import Path

import pytest

from klrpn.config import ParamsError, list_cells, load_cell

PARAMS = Path(__file__).resolve().parents[1] / "params"


@pytest.fixture
def params(tmp_path):
    dst = tmp_path / "params"
    shutil.copytree(PARAMS, dst)
    return dst


def test_twelve_cells_resolve_in_both_profiles():
    cells = list_cells(PARAMS)
    assert len(cells) == 12
    assert sorted(c["table"] for c in cells) == [1] * 6 + [2] * 6
    for cell in cells:
        for profile in ("paper", "smoke"):
            cfg = load_cell(cell["id"], profile, PARAMS)
            assert cfg["cell"] == cell["id"] and cfg["table"] == cell["table"]


@pytest.mark.parametrize("cell,bs,lr,optimizer", [
    ("coco-faster_rcnn-vgg16-rpn", 16, 1e-2, "sgd"),
    ("coco-faster_rcnn-vgg16-klrpn", 16, 6e-5, "adam"),
    ("coco-rfcn-resnet101-klrpn", 8, 4e-5, "adam"),
    ("voc0712-faster_rcnn-resnet101-rpn", 1, 1e-3, "sgd"),
    ("voc07-rfcn-resnet101-rpn", 2, 4e-3, "sgd"),
])
def test_table_values(cell, bs, lr, optimizer):
    t = load_cell(cell, "paper", PARAMS)["train"]
    assert (t["batch_size"], t["lr"], t["optimizer"]) == (bs, lr, optimizer)
    assert t["adam_betas"] == [0.9, 0.999]


def test_paper_settings():
    k = load_cell("coco-faster_rcnn-vgg16-klrpn", "paper", PARAMS)
    r = load_cell("coco-faster_rcnn-vgg16-rpn", "paper", PARAMS)
    assert k["model"]["roi_loss_weight"] == 10.0 and r["model"]["roi_loss_weight"] == 1.0
    assert k["model"]["klrpn"]["gamma"] == 0.5
    assert k["model"]["klrpn"]["neg_var"] == pytest.approx(1 / 3)
    assert k["train"]["grad_clip_norm"] is None and r["train"]["grad_clip_norm"] == 10.0
    assert k["model"]["rpn"]["post_nms_top_n_test"] == 1000
    assert load_cell("voc07-rfcn-resnet101-klrpn", "paper", PARAMS)["model"]["rpn"]["post_nms_top_n_test"] == 300
    assert load_cell("coco-rfcn-resnet101-rpn", "paper", PARAMS)["input"]["min_size"] == [400, 500, 600, 700, 800]
    assert load_cell("voc0712-faster_rcnn-vgg16-rpn", "paper", PARAMS)["dataset"]["train"] == \
        ["2007_trainval", "2012_trainval"]


def test_params_hash_changes_with_a_value(params):
    before = load_cell("coco-faster_rcnn-vgg16-rpn", "paper", params)["params_hash"]
    cell = params / "cells" / "coco-faster_rcnn-vgg16-rpn.yaml"
    cell.write_text(cell.read_text().replace("lr: 1.0e-2", "lr: 2.0e-2"))
    assert load_cell("coco-faster_rcnn-vgg16-rpn", "paper", params)["params_hash"] != before
    other = load_cell("coco-faster_rcnn-vgg16-klrpn", "paper", params)["params_hash"]
    assert other == load_cell("coco-faster_rcnn-vgg16-klrpn", "paper", PARAMS)["params_hash"]


def test_typo_key_names_file_and_key(params):
    cell = params / "cells" / "coco-faster_rcnn-vgg16-klrpn.yaml"
    cell.write_text(cell.read_text().replace("  lr:", "  lrr:"))
    with pytest.raises(ParamsError) as e:
        load_cell("coco-faster_rcnn-vgg16-klrpn", "paper", params)
    assert str(cell) in str(e.value) and "'train.lrr'" in str(e.value)


def test_string_for_number_names_file_and_key(params):
    path = params / "defaults.yaml"
    path.write_text(path.read_text().replace("nms_thresh: 0.7 ", "nms_thresh: high "))
    with pytest.raises(ParamsError) as e:
        load_cell("voc07-rfcn-resnet101-rpn", "paper", params)
    assert str(path) in str(e.value) and "'model.rpn.nms_thresh'" in str(e.value)
    assert "expected number" in str(e.value)


def test_impossible_value_names_key(params):
    path = params / "profiles" / "smoke.yaml"
    path.write_text(path.read_text().replace("steps: [400]", "steps: [600]"))
    with pytest.raises(ParamsError, match=r"train\.schedule\.steps"):
        load_cell("coco-faster_rcnn-resnet101-rpn", "smoke", params)


def test_negative_value_in_profile_names_section(params):
    path = params / "profiles" / "smoke.yaml"
    path.write_text(path.read_text().replace("      lr: 0.02", "      lr: -0.02"))
    with pytest.raises(ParamsError) as e:
        load_cell("coco-faster_rcnn-vgg16-rpn", "smoke", params)
    assert "by_proposal.rpn" in str(e.value) and "'train.lr'" in str(e.value)


def test_unknown_cell_and_missing_file(params):
    with pytest.raises(ParamsError, match="unknown cell 'coco-ssd-vgg16-rpn'"):
        load_cell("coco-ssd-vgg16-rpn", "paper", params)
    with pytest.raises(ParamsError, match=r"profiles/nightly\.yaml: file not found"):
        load_cell("coco-faster_rcnn-vgg16-rpn", "nightly", params)


def test_cell_id_must_match_its_contents(params):
    cell = params / "cells" / "coco-faster_rcnn-vgg16-rpn.yaml"
    cell.write_text(cell.read_text().replace("proposals/rpn.yaml", "proposals/klrpn.yaml"))
    with pytest.raises(ParamsError, match="resolves to 'coco-faster_rcnn-vgg16-klrpn'"):
        load_cell("coco-faster_rcnn-vgg16-rpn", "paper", params)


# --- issue 8: the baseline's settings where the paper is silent -----------------------------------

@pytest.mark.parametrize("cell,length,steps,scales", [
    # jwyang README.md VOC 2007 table: VGG-16 lr_decay 5 / max_epoch 6, Res-101 5 / 7
    ("voc0712-faster_rcnn-vgg16-rpn", 6, [5], [600]),
    ("voc0712-faster_rcnn-vgg16-klrpn", 6, [5], [600]),
    ("voc0712-faster_rcnn-resnet101-rpn", 7, [5], [600]),
    # RFCN_CoupleNet.pytorch README.md: lr_decay 8, max_epoch 20 (decays at epochs 9 and 18)
    ("voc07-rfcn-resnet101-rpn", 20, [8, 17], [400, 500, 600, 700, 800]),
    ("voc07-rfcn-resnet101-klrpn", 20, [8, 17], [400, 500, 600, 700, 800]),
    # jwyang README.md COCO table: lr_decay 4, max_epoch 6
    ("coco-faster_rcnn-resnet101-rpn", 6, [4], [600]),
    ("coco-rfcn-resnet101-rpn", 6, [4], [400, 500, 600, 700, 800]),
])
def test_schedules_and_scales_follow_the_named_baseline(cell, length, steps, scales):
    cfg = load_cell(cell, "paper", PARAMS)
    s = cfg["train"]["schedule"]
    assert (s["unit"], s["length"], s["steps"]) == ("epoch", length, steps)
    assert cfg["input"]["min_size"] == scales and cfg["input"]["test_min_size"] == 600
    assert cfg["input"]["max_size"] is None and cfg["input"]["aspect_crop"] == [0.5, 2.0]
    d = cfg["dataset"]
    assert d["use_difficult_train"] and d["use_crowd_train"] and d["drop_empty_train"]
    assert d["max_gt_boxes"] == (50 if cell.startswith("coco") else 20)
    assert cfg["model"]["weights_style"] == "torchvision"
    assert len(cfg["recipe"]["schedule"]) > 20 and len(cfg["recipe"]["scales"]) > 20


def test_recipe_sources_name_their_baseline_file():
    rfcn = load_cell("voc07-rfcn-resnet101-rpn", "paper", PARAMS)["recipe"]
    assert "RFCN_CoupleNet.pytorch README.md" in rfcn["schedule"] and "paper Table 2" in rfcn["schedule"]
    assert "RFCN_CoupleNet.pytorch README.md" in rfcn["scales"]
    vgg = load_cell("voc0712-faster_rcnn-vgg16-klrpn", "paper", PARAMS)["recipe"]
    assert "VGG-16" in vgg["schedule"] and "jwyang/faster-rcnn.pytorch README.md" in vgg["schedule"]
    assert "blob.py" in vgg["scales"]
    smoke = load_cell("voc07-rfcn-resnet101-rpn", "smoke", PARAMS)["recipe"]
    assert smoke["schedule"].startswith("smoke profile")


def test_recipe_citations_are_not_hashed_but_values_are(params):
    before = load_cell("voc07-rfcn-resnet101-rpn", "paper", params)["params_hash"]
    path = params / "shared" / "voc07-rfcn.yaml"
    text = path.read_text()
    path.write_text(text.replace("max_epoch 20, 73.8 mAP", "max_epoch 20 (73.8 mAP)"))
    cfg = load_cell("voc07-rfcn-resnet101-rpn", "paper", params)
    assert "(73.8 mAP)" in cfg["recipe"]["schedule"] and cfg["params_hash"] == before
    path.write_text(text.replace("min_size: [400, 500, 600, 700, 800]", "min_size: [400, 600, 800]"))
    assert load_cell("voc07-rfcn-resnet101-rpn", "paper", params)["params_hash"] != before


@pytest.mark.parametrize("old,new,key", [
    ("  max_size: null\n", "  max_size: 500\n", "input.max_size"),  # below a short side
    ("aspect_crop: [0.5, 2.0]", "aspect_crop: [1.5, 2.0]", "input.aspect_crop"),
    ("weights_style: torchvision", "weights_style: pytorch", "model.weights_style"),
    ("max_gt_boxes: 20", "max_gt_boxes: 0", "dataset.max_gt_boxes"),
])
def test_bad_baseline_options_name_file_and_key(params, old, new, key):
    path = params / "defaults.yaml"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    with pytest.raises(ParamsError) as e:
        load_cell("voc07-rfcn-resnet101-rpn", "paper", params)
    assert str(path) in str(e.value) and f"'{key}'" in str(e.value)
