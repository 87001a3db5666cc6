"""build_model: the paper's parameter counts, and every smoke cell trains and infers."""

import json
from pathlib import Path

import pytest
import torch

from klrpn.cli import main
from klrpn.config import list_cells, load_cell
from klrpn.models import build_model

PARAMS = Path(__file__).resolve().parents[2] / "params"
CELLS = [c["id"] for c in list_cells(PARAMS)]


@pytest.mark.parametrize("cell,expected_m,exact", [
    # paper Table 1 Param(M); exact counts derived in docs/models.md
    ("coco-faster_rcnn-vgg16-rpn", "138.31", 138_307_339),
    ("coco-faster_rcnn-vgg16-klrpn", "138.32", 138_316_573),
    ("coco-faster_rcnn-resnet101-rpn", "48.08", 48_076_811),
    ("coco-faster_rcnn-resnet101-klrpn", "48.09", 48_086_045),
])
def test_model_info_gives_paper_param_column(cell, expected_m, exact, capsys, monkeypatch):
    monkeypatch.setenv("KLRPN_PARAMS", str(PARAMS))
    assert main(["model-info", cell, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cell"] == cell
    assert info["params"] == exact
    assert f"{info['params'] / 1e6:.2f}" == expected_m


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, 112, 144, generator=g), torch.rand(3, 136, 120, generator=g)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [50.0, 40.0, 120.0, 100.0]]),
         "labels": torch.tensor([1, 3])},
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)},  # no objects
    ]
    return images, targets


@pytest.mark.parametrize("cell", CELLS)
def test_smoke_cell_trains_and_infers(cell):
    torch.manual_seed(0)
    cfg = load_cell(cell, "smoke", PARAMS)
    model = build_model(cfg)
    images, targets = _batch()
    model.train()
    losses = model(images, targets)
    expected = {"loss_kl"} if cfg["model"]["proposal"] == "klrpn" else {"loss_rpn_cls", "loss_rpn_reg"}
    assert set(losses) == expected | {"loss_cls", "loss_reg"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2
    for det, img in zip(detections, images):
        assert set(det) == {"boxes", "labels", "scores"}
        h, w = img.shape[-2:]
        assert det["boxes"].shape[1] == 4 and det["boxes"].shape[0] <= cfg["model"]["roi"]["detections_per_img"]
        assert (det["boxes"][:, 2] <= w).all() and (det["boxes"][:, 3] <= h).all()
        assert ((det["labels"] >= 1) & (det["labels"] <= 3)).all()
    proposals = model.propose(images)
    assert len(proposals[0]["boxes"]) <= cfg["model"]["rpn"]["post_nms_top_n_test"]
    assert ("log_var" in proposals[0]) == (cfg["model"]["proposal"] == "klrpn")


def test_smoke_models_are_the_same_families_at_small_width():
    full = build_model(load_cell("coco-faster_rcnn-resnet101-rpn", "paper", PARAMS), load_pretrained=False)
    toy = build_model(load_cell("coco-faster_rcnn-resnet101-rpn", "smoke", PARAMS))
    assert [type(m).__name__ for m in full.backbone.body] == [type(m).__name__ for m in toy.backbone.body]
    assert sum(p.numel() for p in toy.parameters()) * 100 < sum(p.numel() for p in full.parameters())


def _smoke_with_paper_freezing(cell):
    """The smoke model with the paper profile's frozen layers (the smoke profile freezes none)."""
    cfg = load_cell(cell, "smoke", PARAMS)
    cfg["model"]["frozen"] = load_cell(cell, "paper", PARAMS)["model"]["frozen"]
    return build_model(cfg)


def test_frozen_layers_follow_the_baseline():
    vgg = _smoke_with_paper_freezing("voc0712-faster_rcnn-vgg16-rpn")
    frozen = {n for n, p in vgg.named_parameters() if not p.requires_grad}
    assert frozen == {f"backbone.body.{i}.{k}" for i in (0, 2, 5, 7) for k in ("weight", "bias")}
    res = _smoke_with_paper_freezing("voc07-rfcn-resnet101-klrpn")
    frozen = {n.split(".")[2] for n, p in res.named_parameters() if not p.requires_grad}
    assert frozen == {"0", "4"}  # conv1 and layer1 of the body
    assert not any(type(m).__name__ == "BatchNorm2d" for m in res.modules())


def test_pretrained_weights_missing_is_a_clear_error(tmp_path):
    cfg = load_cell("voc0712-faster_rcnn-vgg16-rpn", "paper", PARAMS)
    cfg["model"]["weights_dir"] = str(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"vgg16-397923af\.pth.*klrpn data download weights"):
        build_model(cfg)


def test_pretrained_weights_load_into_full_width(tmp_path):
    import torchvision

    state = torchvision.models.resnet101().state_dict()
    torch.save(state, tmp_path / "resnet101-63fe2227.pth")
    cfg = load_cell("voc07-rfcn-resnet101-rpn", "paper", PARAMS)
    cfg["model"]["weights_dir"] = str(tmp_path)
    model = build_model(cfg)
    torch.testing.assert_close(model.backbone.body[0].weight, state["conv1.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.roi_heads.box_head.layer4[0].conv2.weight,
                               state["layer4.0.conv2.weight"], rtol=0, atol=0)
