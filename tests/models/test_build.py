"""build_model: the paper's parameter counts, and every smoke cell trains and infers."""

import json

import pytest
import torch

from klrpn.cli import main
from klrpn.config import list_cells, load_cell
from klrpn.metrics.model_stats import count_parameters
from klrpn.models import build_model

from helpers import PARAMS

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
    for t in targets:  # the training short side, as the train loader draws it per batch
        t["train_size"] = cfg["input"]["min_size"][-1]
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


# --- R-FCN box regression (finding 7) ------------------------------------------------------------

@pytest.mark.parametrize("cell,agnostic,params", [
    # R-FCN [11] (Table 1's baseline): class-agnostic; the count is the one before the option
    ("coco-rfcn-resnet101-rpn", True, 53_614_267),
    ("coco-rfcn-resnet101-klrpn", True, 53_623_501),
    # RFCN_CoupleNet.pytorch default (--cag off): class-specific, 4 k^2 (C + 1) box maps
    ("voc07-rfcn-resnet101-rpn", False, 50_600_767 + (1024 + 1) * 49 * 4 * 20),
])
def test_rfcn_box_regression_follows_each_baseline(cell, agnostic, params):
    cfg = load_cell(cell, "paper", PARAMS)
    assert cfg["model"]["roi"]["class_agnostic"] is agnostic
    model = build_model(cfg, load_pretrained=False)
    c = cfg["dataset"]["num_classes"]
    assert model.roi_heads.box_head.bbox_maps.out_channels == 49 * 4 * (1 if agnostic else c + 1)
    assert model.roi_heads.class_agnostic is agnostic
    assert count_parameters(model) == params  # as `klrpn model-info` counts


def test_class_specific_rfcn_predicts_one_box_per_class():
    cfg = load_cell("voc07-rfcn-resnet101-rpn", "smoke", PARAMS)
    model = build_model(cfg).eval()
    head = model.roi_heads.box_head
    feature = torch.rand(1, model.backbone.out_channels, 8, 10)
    logits, deltas = head(feature, [torch.tensor([[0.0, 0.0, 64.0, 64.0], [16.0, 16.0, 96.0, 120.0]])])
    assert logits.shape == (2, 4) and deltas.shape == (2, 16)  # 3 classes + background, x 4


# --- input resizing (finding 6) and the caffe weights style (finding 8) --------------------------

def test_paper_transform_does_not_cap_the_long_side():
    cfg = load_cell("voc07-rfcn-resnet101-rpn", "paper", PARAMS)
    assert cfg["input"]["max_size"] is None
    model = build_model(cfg, load_pretrained=False)
    image = torch.rand(3, 50, 200)  # aspect 4: torchvision's max_size 1000 would give 250 x 1000
    model.eval()
    assert model.transform([image])[0].image_sizes == [(600, 2400)]
    model.train()
    target = {"boxes": torch.tensor([[10.0, 10.0, 40.0, 40.0]]), "labels": torch.tensor([1]),
              "train_size": 800}
    images, targets = model.transform([image], [target])
    assert images.image_sizes == [(800, 3200)]
    assert targets[0]["boxes"].tolist() == [[160.0, 160.0, 640.0, 640.0]]


def _caffe(cfg):
    cfg["model"]["weights_style"] = "caffe"
    return cfg


def test_caffe_style_preprocesses_bgr_0_255_minus_the_baseline_means():
    cfg = _caffe(load_cell("coco-faster_rcnn-resnet101-rpn", "smoke", PARAMS))
    model = build_model(cfg)
    transform = model.transform
    images, targets = _batch()
    assert torch.isfinite(sum(model.train()(images, targets).values()))  # it trains
    image = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(0))
    means = torch.tensor([102.9801, 115.9465, 122.7717])  # baseline config.py PIXEL_MEANS (BGR)
    expected = image[[2, 1, 0]] * 255.0 - means[:, None, None]
    torch.testing.assert_close(transform.normalize(image), expected, rtol=0, atol=1e-4)
    torchvision_style = build_model(load_cell("coco-faster_rcnn-resnet101-rpn", "smoke", PARAMS)).transform
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(torchvision_style.normalize(image),
                               (image - mean[:, None, None]) / std[:, None, None])


def test_caffe_resnet_strides_in_the_first_1x1_conv_and_loads_caffe_weights(tmp_path):
    import torchvision

    state = torchvision.models.resnet101().state_dict()  # the caffe file uses torchvision's names
    state["layer2.0.conv1.weight"] = torch.full_like(state["layer2.0.conv1.weight"], 0.5)
    torch.save(state, tmp_path / "resnet101_caffe.pth")
    cfg = _caffe(load_cell("coco-faster_rcnn-resnet101-rpn", "paper", PARAMS))
    cfg["model"]["weights_dir"] = str(tmp_path)
    caffe = build_model(cfg)
    torch.testing.assert_close(caffe.backbone.body[5][0].conv1.weight, state["layer2.0.conv1.weight"],
                               rtol=0, atol=0)
    plain = build_model(load_cell("coco-faster_rcnn-resnet101-rpn", "paper", PARAMS), load_pretrained=False)
    layers = {"caffe": caffe.backbone.body, "torchvision": plain.backbone.body}
    for style, body in layers.items():
        first_1x1, first_3x3 = (2, 2) if style == "caffe" else (1, 1), (1, 1) if style == "caffe" else (2, 2)
        for layer in (body[5], body[6]):  # layer2, layer3: the downsampling blocks
            assert layer[0].conv1.stride == first_1x1 and layer[0].conv2.stride == first_3x3
            assert layer[0].downsample[0].stride == (2, 2)
            assert all(b.conv1.stride == b.conv2.stride == (1, 1) for b in layer[1:])
        assert body[4][0].conv1.stride == body[4][0].conv2.stride == (1, 1)  # layer1 keeps stride 1
    assert (caffe.backbone.body[3].padding, caffe.backbone.body[3].ceil_mode) == (0, True)
    assert (plain.backbone.body[3].padding, plain.backbone.body[3].ceil_mode) == (1, False)
    # same parameters (Table 1's count), same stride-16 output
    assert count_parameters(caffe) == 48_076_811
    with torch.no_grad():
        out = caffe.backbone(torch.rand(1, 3, 96, 128))["0"]
    assert out.shape[-2:] == (6, 8)


def test_caffe_weights_missing_names_the_caffe_file(tmp_path):
    cfg = _caffe(load_cell("voc0712-faster_rcnn-vgg16-rpn", "paper", PARAMS))
    cfg["model"]["weights_dir"] = str(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"vgg16_caffe\.pth"):
        build_model(cfg)


@pytest.mark.parametrize("multiple", [32, 128])
def test_batches_are_padded_to_input_pad_multiple_outside_the_image_sizes(multiple):
    """input.pad_multiple (issue 11): the batch tensor grows to the multiple, the image sizes
    (which bound anchors and boxes) do not, and the padding is zero."""
    cfg = load_cell("coco-faster_rcnn-vgg16-rpn", "smoke", PARAMS)
    cfg["input"]["pad_multiple"] = multiple
    model = build_model(cfg).eval()
    images, _ = _batch()
    batch, _ = model.transform(images)
    h, w = batch.tensors.shape[-2:]
    assert (h % multiple, w % multiple) == (0, 0)
    assert (h, w) == ((160, 192) if multiple == 32 else (256, 256))
    assert batch.image_sizes == [(128, 164), (145, 128)]
    assert batch.tensors[0, :, 128:].abs().sum() == 0 and batch.tensors[1, :, :, 128:].abs().sum() == 0
