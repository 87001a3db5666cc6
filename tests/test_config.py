"""klrpn.config: merging, validation and error messages that name the file and the key."""

import shutil
from pathlib import Path

import pytest

from klrpn.config import ParamsError, list_cells, load_cell

from helpers import PARAMS


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


def _add_combinations(params, entries) -> Path:
    import yaml

    path = params / "profiles" / "smoke.yaml"
    data = yaml.safe_load(path.read_text())
    data["by_combination"] = entries
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


HIT = {"coco-faster_rcnn-resnet101-rpn": 0.123, "voc0712-faster_rcnn-resnet101-rpn": 0.123,
       "coco-rfcn-resnet101-rpn": 0.123, "voc07-rfcn-resnet101-rpn": 0.456}


def test_by_combination_overrides_only_cells_matching_every_key(params):
    # the entries apply after every by_* section (by_proposal.rpn sets an lr too), in list
    # order (voc07-rfcn-resnet101-rpn matches both: the second wins)
    before = {c["id"]: load_cell(c["id"], "smoke", params)["train"] for c in list_cells(params)}
    before_hash = {c["id"]: load_cell(c["id"], "smoke", params)["params_hash"] for c in list_cells(params)}
    _add_combinations(params, [
        {"when": {"backbone": "resnet101", "proposal": "rpn"}, "set": {"train": {"lr": 0.123}}},
        {"when": {"detector": "rfcn", "proposal": "rpn", "format": "voc"},
         "set": {"train": {"lr": 0.456, "schedule": {"length": 650}}}},
    ])
    for cell, old in before.items():
        cfg = load_cell(cell, "smoke", params)
        expected = HIT.get(cell)
        assert cfg["train"]["lr"] == (expected or old["lr"]), cell
        length = 650 if cell == "voc07-rfcn-resnet101-rpn" else old["schedule"]["length"]
        assert cfg["train"]["schedule"]["length"] == length, cell
        assert (cfg["params_hash"] != before_hash[cell]) == (cell in HIT), cell


@pytest.mark.parametrize("entries, message", [
    ({"when": {}, "set": {}}, "'by_combination' must be a list"),
    ([{"when": {"backbone": "resnet101"}}], r"by_combination\[0\]\]: an entry must be a mapping"),
    ([{"when": {}, "set": {"train": {"lr": 0.1}}}], "'when' must be a non-empty mapping"),
    ([{"when": {"backbone": "resnet50"}, "set": {"train": {"lr": 0.1}}}],
     r"'when.backbone': 'resnet50' is not one of \['vgg16', 'resnet101'\]"),
    ([{"when": {"optimizer": "sgd"}, "set": {"train": {"lr": 0.1}}}], "unknown key 'when.optimizer'"),
    ([{"when": {"proposal": "rpn"}, "set": {}}], "'set' must be a non-empty mapping"),
    # a bad override fails even for a cell the entry does not match (this one is VGG-16)
    ([{"when": {"backbone": "resnet101"}, "set": {"train": {"lr": -1}}}],
     r"by_combination\[0\]\]: key 'train.lr'"),
    ([{"when": {"backbone": "resnet101"}, "set": {"train": {"lrr": 1}}}], "unknown key 'train.lrr'"),
])
def test_by_combination_errors_name_the_entry(params, entries, message):
    path = _add_combinations(params, entries)
    with pytest.raises(ParamsError, match=message) as e:
        load_cell("coco-faster_rcnn-vgg16-rpn", "smoke", params)
    assert str(path) in str(e.value)


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


# --- ablation variants (issue 10) ---------------------------------------------------------------

BASE = "voc0712-faster_rcnn-vgg16-klrpn"
VARIANT_CHANGES = {
    f"{BASE}--gamma1": {"model.klrpn.gamma": 1.0},
    f"{BASE}--negvar1": {"model.klrpn.neg_var": 1.0},
    f"{BASE}--roiweight1": {"model.roi_loss_weight": 1.0},
    f"{BASE}--sgd": {"train.optimizer": "sgd", "train.lr": 1.0e-3},
    f"{BASE}--meansigma": {"model.klrpn.score": "mean_sigma"},
}


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_variants_change_exactly_their_keys():
    from klrpn.config import list_variants

    assert [v["id"] for v in list_variants(PARAMS)] == list(VARIANT_CHANGES)
    base = _flat(load_cell(BASE, "paper", PARAMS))
    skip = {"cell", "base_cell", "sources", "params_hash"}
    for vid, changes in VARIANT_CHANGES.items():
        cfg = load_cell(vid, "paper", PARAMS)
        assert cfg["cell"] == vid and cfg["base_cell"] == BASE and cfg["table"] == 2
        flat = _flat(cfg)
        diff = {k: flat.get(k) for k in set(flat) | set(base) - skip
                if k not in skip and flat.get(k) != base.get(k)}
        assert diff == changes, vid
        assert cfg["params_hash"] != load_cell(BASE, "paper", PARAMS)["params_hash"]
        assert cfg["sources"][1].endswith(f"ablations/{vid}.yaml") or any(
            s.endswith(f"ablations/{vid}.yaml") for s in cfg["sources"])
        load_cell(vid, "smoke", PARAMS)                    # and in the smoke profile


def test_paper_cells_have_no_score_key():
    """The proposal-score switch is optional (absent = eq. 10), so it leaves the params hash
    of the paper cells alone."""
    for cell in list_cells(PARAMS):
        assert "score" not in load_cell(cell["id"], "paper", PARAMS)["model"]["klrpn"]


def test_variant_errors_name_the_file(params):
    with pytest.raises(ParamsError, match=r"unknown cell .*ablation variants: .*--gamma1"):
        load_cell(f"{BASE}--gamma2", "paper", params)
    path = params / "ablations" / f"{BASE}--gamma1.yaml"
    path.write_text(path.read_text().replace("gamma: 1.0", "gamma: one"))
    with pytest.raises(ParamsError) as e:
        load_cell(f"{BASE}--gamma1", "paper", params)
    assert str(path) in str(e.value) and "'model.klrpn.gamma'" in str(e.value)
    path.write_text(path.read_text().replace(f"cells/{BASE}.yaml", "datasets/voc0712.yaml"))
    with pytest.raises(ParamsError, match=r"--gamma1\.yaml: key 'extends' must be"):
        load_cell(f"{BASE}--gamma1", "paper", params)
    score = params / "ablations" / f"{BASE}--meansigma.yaml"
    score.write_text(score.read_text().replace("mean_sigma", "median_sigma"))
    with pytest.raises(ParamsError, match="model.klrpn.score"):
        load_cell(f"{BASE}--meansigma", "paper", params)


def test_ablations_index_is_validated(params):
    from klrpn.config import list_variants

    index = params / "ablations.yaml"
    text = index.read_text()
    index.write_text(text.replace(f"id: {BASE}--sgd,", "id: voc07-rfcn-resnet101-klrpn--sgd,"))
    with pytest.raises(ParamsError, match=r"variants\[3\]\.id"):
        list_variants(params)
    index.write_text(text.replace(f"base: {BASE}, factor: \"optimizer\"", "base: nope, factor: \"optimizer\""))
    with pytest.raises(ParamsError, match=r"variants\[3\]\.base"):
        list_variants(params)
    index.unlink()
    assert list_variants(params) == []


def test_seed_argument_overrides_the_params_seed():
    cell = "voc07-rfcn-resnet101-klrpn"
    plain = load_cell(cell, "smoke", PARAMS)
    assert plain["seed"] == 0
    assert load_cell(cell, "smoke", PARAMS, seed=0)["params_hash"] == plain["params_hash"]
    two = load_cell(cell, "smoke", PARAMS, seed=2)
    assert two["seed"] == 2 and two["params_hash"] != plain["params_hash"]
    assert load_cell(f"{BASE}--gamma1", "paper", PARAMS, seed=1)["seed"] == 1
    with pytest.raises(ParamsError, match="seed must be an integer >= 0"):
        load_cell(cell, "smoke", PARAMS, seed=-1)


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
    ("pad_multiple: 128", "pad_multiple: 40", "input.pad_multiple"),  # not a multiple of 16
])
def test_bad_baseline_options_name_file_and_key(params, old, new, key):
    path = params / "defaults.yaml"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    with pytest.raises(ParamsError) as e:
        load_cell("voc07-rfcn-resnet101-rpn", "paper", params)
    assert str(path) in str(e.value) and f"'{key}'" in str(e.value)


# --- command-line overrides (--set KEY=VALUE) -----------------------------------------------------

SET_CELL = "voc07-rfcn-resnet101-klrpn"


def test_override_values_are_read_as_yaml():
    from klrpn.config import parse_overrides

    assert parse_overrides(["train.lr=0.002", "input.min_size=[96, 128]", "input.flip=false",
                            "input.max_size=null", "dataset.root=data/x", "train.lr=2e-3",
                            "model.roi.nms_thresh=.5", "dataset.test=2007-01-01"]) == {
        "dataset.root": "data/x", "dataset.test": "2007-01-01", "input.flip": False,
        "input.max_size": None, "input.min_size": [96, 128], "model.roi.nms_thresh": 0.5,
        "train.lr": 0.002}                         # sorted; the later train.lr wins; no dates
    assert parse_overrides(["train.schedule={length: 10, steps: [8]}"]) == \
        {"train.schedule.length": 10, "train.schedule.steps": [8]}   # a mapping: its leaves
    assert parse_overrides(None) == parse_overrides([]) == {}


def test_override_items_round_trip():
    from klrpn.config import override_items, parse_overrides

    canonical = parse_overrides(["train.lr=1e-5", "input.min_size=[96]", "input.max_size=~",
                                 "dataset.root=a b"])
    assert override_items(canonical) == ['dataset.root="a b"', "input.max_size=null",
                                         "input.min_size=[96]", "train.lr=1e-05"]
    assert parse_overrides(override_items(canonical)) == canonical


def test_an_override_changes_the_value_and_the_params_hash():
    plain = load_cell(SET_CELL, "smoke", PARAMS)
    cfg = load_cell(SET_CELL, "smoke", PARAMS, overrides=["train.lr=0.002"])
    assert plain["train"]["lr"] == 0.001 and cfg["train"]["lr"] == 0.002
    assert cfg["overrides"] == {"train.lr": 0.002} and plain["overrides"] == {}
    assert cfg["params_hash"] != plain["params_hash"]
    assert cfg["params_hash"] == load_cell(SET_CELL, "smoke", PARAMS,
                                           overrides={"train.lr": 0.002})["params_hash"]
    # the rest of the config is untouched; an override with the params' own value changes nothing
    assert {**cfg, "train": plain["train"], "overrides": {}, "params_hash": 0} == \
        {**plain, "params_hash": 0}
    same = load_cell(SET_CELL, "smoke", PARAMS, overrides=["train.lr=0.001"])
    assert same["params_hash"] == plain["params_hash"]
    # with --seed too: both apply
    both = load_cell(SET_CELL, "smoke", PARAMS, seed=2, overrides=["train.lr=0.002"])
    assert (both["seed"], both["train"]["lr"]) == (2, 0.002)
    assert both["params_hash"] not in (cfg["params_hash"], plain["params_hash"])


def test_a_mapping_override_merges_into_its_section():
    cfg = load_cell(SET_CELL, "smoke", PARAMS, overrides=["train.schedule={length: 10, steps: [8]}"])
    plain = load_cell(SET_CELL, "smoke", PARAMS)
    assert cfg["train"]["schedule"] == {**plain["train"]["schedule"], "length": 10, "steps": [8]}


@pytest.mark.parametrize("items, message", [
    (["train.lrr=1"], "--set train.lrr=1: unknown key 'train.lrr' (did you mean 'train.lr'?)"),
    (["train.lr=fast"], "--set train.lr=fast: key 'train.lr': expected number, got str 'fast'"),
    (["input.flip=3"], "--set input.flip=3: key 'input.flip': expected boolean, got int 3"),
    (["train.schedule={lenth: 3}"], "--set train.schedule={lenth: 3}: unknown key "
                                    "'train.schedule.lenth' (did you mean 'train.schedule.length'?)"),
    (["train.lr"], "--set train.lr: expected KEY=VALUE, e.g. --set train.lr=0.002"),
    (["=1"], "--set =1: '' is not a dotted params key (e.g. train.lr)"),
    (["input.min_size.0=96"], "--set input.min_size.0=96: lists are set whole, not by element "
                              "(e.g. --set input.min_size=[600,800])"),
    (["input.min_size[0]=96"], "--set input.min_size[0]=96: lists are set whole, not by element "
                               "(e.g. --set input.min_size=[600,800])"),
    (["train.lr=[1,"], "--set train.lr=[1,: the value is not valid YAML: expected the node "
                       "content, but found '<stream end>'"),
    (["seed=3"], "--set seed=3: key 'seed' cannot be set: a run's seed is --seed N (its runs "
                 "have folders of their own)"),
    (["model.proposal=rpn"], "--set model.proposal=rpn: key 'model.proposal' cannot be set: it "
                             "is part of the cell id: train that cell instead"),
    (["train.lr=0.002", "input.max_size=100"],
     "--set input.max_size=100: key 'input.max_size': 100 is below a short side of "
     "input.min_size / input.test_min_size (null: no cap)"),            # consistency checks
])
def test_override_errors_are_one_line_naming_the_item(items, message):
    with pytest.raises(ParamsError) as e:
        load_cell(SET_CELL, "smoke", PARAMS, overrides=items)
    assert str(e.value) == message


def test_unknown_keys_in_params_files_get_a_suggestion_too(params):
    cell = params / "cells" / "coco-faster_rcnn-vgg16-klrpn.yaml"
    cell.write_text(cell.read_text().replace("  lr:", "  lrr:"))
    with pytest.raises(ParamsError, match=r"unknown key 'train\.lrr' \(did you mean 'train\.lr'\?\)"):
        load_cell("coco-faster_rcnn-vgg16-klrpn", "paper", params)
