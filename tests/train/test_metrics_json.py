"""metrics.json: the documented examples and what evaluate builds validate against the schema;
malformed documents do not; the dataset manifest hash follows the annotation files."""

import copy
import json
import re
from pathlib import Path

import pytest
import torch

from helpers import REPO, metrics_doc

from klrpn import checkpoint as ckpt
from klrpn import evaluate, provenance
from klrpn.data.files import annotation_files

DOC = REPO / "docs" / "metrics-json.md"


def documented_examples() -> list[dict]:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.S)
    return [json.loads(b) for b in blocks]


QUALITY = {"ar_curve": {"10": 20.0, "20": 30.0, "50": 35.0, "100": 40.0, "200": 45.0, "300": 45.0,
                        "500": 45.0, "1000": 45.0},
           "recall_vs_iou": {k: {f"{t / 100:.2f}": 90.0 - t / 2 for t in range(50, 100, 5)}
                             for k in ("300", "1000")},
           "score_iou": {"rho": 0.4, "rho_overlapping": float("nan"), "num_proposals": 6000,
                         "num_overlapping": 900}}


def built_document(metrics=None, cfg=None) -> dict:
    from klrpn.config import load_cell

    cfg = cfg or load_cell("voc07-rfcn-resnet101-rpn", "smoke", DOC.parents[1] / "params")
    final = {"iteration": 300, "wall_time_s": 12.5,
             "provenance": provenance.provenance_at_train(torch.device("cpu"), 1, None)}
    return evaluate.metrics_document(
        cfg, final, dataset_info={"num_test_images": 60, "manifest_sha256": "b" * 64},
        metrics=metrics or {"mAP": 12.5, "per_class": {"circle": 20.0, "square": 5.0,
                                                       "triangle": None}},
        proposals={"AR@100": 40.0, "AR@300": 45.0, "AR@1000": 45.0}, params=2_130_468,
        proposal_quality=QUALITY,
        speed={"ms_per_image": 35.2, "device": "cpu: test"}, eval_wall_time_s=3.0)


def test_documented_examples_validate():
    examples = documented_examples()
    assert len(examples) == 2
    for doc in examples:
        evaluate.validate_metrics(doc)


def test_built_document_validates_and_is_json():
    doc = built_document()
    evaluate.validate_metrics(doc)
    assert json.loads(json.dumps(doc)) == doc
    assert doc["params_M"] == 2.13 and doc["provenance"]["train_iters"] == 300
    assert doc["recipe"]["train_min_size"] == [96, 112, 128, 144, 160]
    assert doc["recipe"]["sources"]["schedule"].startswith("smoke profile")
    assert doc["provenance"]["imagenet_weights"] == {"style": "torchvision", "file": None}  # smoke: none
    coco = built_document({"AP": 1.0, "AP50": 2.0, "AP75": 0.5, "APS": None, "APM": 1.0,
                           "APL": float("nan")})
    assert coco["metrics"]["APL"] is None          # undefined -> null
    evaluate.validate_metrics(coco)


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d.pop("speed"), "speed"),
    (lambda d: d["metrics"].update(AP=130.0), "metrics"),
    (lambda d: d["metrics"].pop("per_class"), "metrics"),
    (lambda d: d.update(extra=1), "extra"),
    (lambda d: d["proposals"].pop("AR@1000"), "proposals"),
    (lambda d: d["dataset"].update(manifest_sha256="xyz"), "dataset.manifest_sha256"),
    (lambda d: d["provenance"].update(date="yesterday"), "provenance.date"),
    (lambda d: d.update(cell="coco-yolo-vgg16-rpn"), "cell"),
    (lambda d: d.pop("proposal_quality"), "proposal_quality"),
    (lambda d: d["proposal_quality"]["ar_curve"].pop("20"), "proposal_quality.ar_curve"),
    (lambda d: d["proposal_quality"]["recall_vs_iou"]["300"].update({"0.97": 1.0}),
     "proposal_quality.recall_vs_iou.300"),
    (lambda d: d["proposal_quality"]["score_iou"].update(rho=1.5), "proposal_quality.score_iou.rho"),
    (lambda d: d.update(schema_version=3), "schema_version"),
])


def test_malformed_documents_fail(mutate, key):
    doc = copy.deepcopy(built_document())
    mutate(doc)
    with pytest.raises(ValueError, match=re.escape(key)):
        evaluate.validate_metrics(doc)


def test_schema_versions():
    """Version 2 requires proposal_quality; version 1 (before issue 10) must not have it; an
    ablation variant's id is a valid cell."""
    doc = built_document()
    assert doc["schema_version"] == 2 and doc["proposal_quality"]["score_iou"]["rho_overlapping"] is None
    old = copy.deepcopy(doc)
    old["schema_version"] = 1
    with pytest.raises(ValueError):
        evaluate.validate_metrics(old)
    old.pop("proposal_quality")
    evaluate.validate_metrics(old)
    evaluate.validate_metrics({**doc, "cell": "voc0712-faster_rcnn-vgg16-klrpn--gamma1"})
    with pytest.raises(ValueError, match="cell"):
        evaluate.validate_metrics({**doc, "cell": "voc0712-faster_rcnn-vgg16-klrpn--Gamma"})


def test_fabricated_metrics_helper_validates():
    """tests/helpers.py's metrics_doc (the one builder of made-up metrics.json files) follows the
    schema for cells, variants and both schema versions."""
    for cell in ("coco-faster_rcnn-vgg16-rpn", "voc07-rfcn-resnet101-klrpn",
                 "voc0712-faster_rcnn-vgg16-klrpn--meansigma"):
        for version in (1, 2):
            evaluate.validate_metrics(metrics_doc(cell, profile="smoke", seed=1, schema_version=version))


def test_train_provenance_is_weights_only_safe(tmp_path):
    prov = provenance.provenance_at_train(torch.device("cpu"), 1, torch.bfloat16)
    assert prov["amp"] == "bfloat16"
    ckpt.save_final(tmp_path, {"w": torch.zeros(1)}, {"params_hash": "a" * 64}, 3, provenance=prov,
                    wall_time_s=1.0)
    assert ckpt.load_final(tmp_path)["provenance"] == prov


def write_voc(root: Path, names=("000001", "000002")):
    base = root / "VOC2007"
    (base / "ImageSets" / "Main").mkdir(parents=True)
    (base / "Annotations").mkdir()
    (base / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(names[:1]) + "\n")
    (base / "ImageSets" / "Main" / "test.txt").write_text("\n".join(names[1:]) + "\n")
    for n in names:
        (base / "Annotations" / f"{n}.xml").write_text(f"<annotation><filename>{n}</filename></annotation>")


def test_manifest_hash_tracks_annotations(tmp_path):
    write_voc(tmp_path)
    cfg = {"dataset": {"format": "voc", "root": str(tmp_path), "train": ["2007_trainval"],
                       "test": "2007_test"}}
    files = [rel for rel, _ in annotation_files(cfg)]
    assert files == ["VOC2007/Annotations/000001.xml", "VOC2007/Annotations/000002.xml",
                     "VOC2007/ImageSets/Main/test.txt", "VOC2007/ImageSets/Main/trainval.txt"]
    first = evaluate.manifest_sha256(cfg)
    assert re.fullmatch(r"[0-9a-f]{64}", first) and evaluate.manifest_sha256(cfg) == first
    (tmp_path / "VOC2007" / "Annotations" / "000002.xml").write_text("<annotation/>")
    assert evaluate.manifest_sha256(cfg) != first
    (tmp_path / "VOC2007" / "Annotations" / "000001.xml").unlink()
    with pytest.raises(FileNotFoundError, match="000001.xml"):
        evaluate.manifest_sha256(cfg)


def test_eval_metric_must_fit_the_dataset_format():
    evaluate.check_metric({"cell": "c", "dataset": {"format": "voc"}, "eval": {"metric": "voc07"}})
    with pytest.raises(ValueError, match="eval.metric 'coco'"):
        evaluate.check_metric({"cell": "c", "dataset": {"format": "voc"}, "eval": {"metric": "coco"}})


def test_recipe_and_weights_style_come_from_the_cell_params():
    from klrpn.config import load_cell

    cfg = load_cell("voc07-rfcn-resnet101-rpn", "paper", DOC.parents[1] / "params")
    cfg["model"]["weights_style"] = "caffe"
    doc = built_document(cfg=cfg)
    evaluate.validate_metrics(doc)
    assert doc["provenance"]["imagenet_weights"] == {"style": "caffe", "file": "resnet101_caffe.pth"}
    assert doc["recipe"]["schedule"] == {"unit": "epoch", "length": 20, "steps": [8, 17]}
    assert (doc["recipe"]["train_min_size"], doc["recipe"]["test_min_size"], doc["recipe"]["max_size"]) == \
        ([400, 500, 600, 700, 800], 600, None)
    assert "RFCN_CoupleNet.pytorch README.md" in doc["recipe"]["sources"]["schedule"]
    assert "RFCN_CoupleNet.pytorch README.md" in doc["recipe"]["sources"]["scales"]


def test_speed_comes_from_the_evaluation_pass_after_its_warmup_images():
    from klrpn.evaluate import latency

    cfg = {"eval": {"latency_images": 3, "latency_warmup": 1}}
    cpu = torch.device("cpu")
    assert latency([100.0, 5.0, 7.0, 6.0, 9.0], cfg, cpu)["ms_per_image"] == 6.0
    assert latency([100.0, 8.0], cfg, cpu)["ms_per_image"] == 8.0   # fewer images than asked
    assert latency([42.0], cfg, cpu)["ms_per_image"] == 42.0        # only the warm-up image
    with pytest.raises(ValueError, match="no image"):
        latency([], cfg, cpu)


VERSIONS = {"numpy": "2.4.6", "pillow": "13.0.0", "pycocotools": "2.0.11", "scipy": "1.17.1"}


def fake_versions(monkeypatch):
    """torch / torchvision / the distributions at fixed made-up versions."""
    import torchvision

    monkeypatch.setattr(torch, "__version__", "2.14.1+cu130")
    monkeypatch.setattr(torchvision, "__version__", "0.29.1+cu130")

    def version_of(name):
        if name not in VERSIONS:
            raise provenance.metadata.PackageNotFoundError(name)
        return VERSIONS[name]

    monkeypatch.setattr(provenance.metadata, "version", version_of)


def test_package_versions_records_every_package_that_touches_the_numbers(monkeypatch):
    fake_versions(monkeypatch)
    expected = {"klrpn": "0.1.0", "torch": "2.14.1+cu130", "torchvision": "0.29.1+cu130",
                "numpy": "2.4.6", "pillow": "13.0.0", "pycocotools": "2.0.11", "scipy": "1.17.1"}
    assert provenance.package_versions(provenance.metadata.version) == expected
    assert tuple(expected) == provenance.PACKAGES
    del VERSIONS["scipy"]
    try:
        assert provenance.package_versions(provenance.metadata.version)["scipy"] is None
    finally:
        VERSIONS["scipy"] = "1.17.1"
    train = provenance.provenance_at_train(torch.device("cpu"), 1, None)
    assert {k: train[k] for k in provenance.PACKAGES} == expected


def test_package_versions_are_the_installed_ones():
    import numpy
    import PIL
    import scipy
    import torchvision
    from importlib.metadata import version

    v = provenance.package_versions()
    assert v == {"klrpn": "0.1.0", "torch": torch.__version__, "torchvision": torchvision.__version__,
                 "numpy": numpy.__version__, "pillow": PIL.__version__,
                 "pycocotools": version("pycocotools"), "scipy": scipy.__version__}


def test_metrics_json_records_the_package_versions(monkeypatch):
    fake_versions(monkeypatch)
    doc = built_document()
    prov = doc["provenance"]
    assert {k: prov[k] for k in provenance.PACKAGES} == {
        "klrpn": "0.1.0", "torch": "2.14.1+cu130", "torchvision": "0.29.1+cu130", "numpy": "2.4.6",
        "pillow": "13.0.0", "pycocotools": "2.0.11", "scipy": "1.17.1"}
    assert {k: prov["train"][k] for k in provenance.PACKAGES} == {k: prov[k] for k in provenance.PACKAGES}
    evaluate.validate_metrics(doc)
    # all of them or (a metrics.json from before they were recorded) none
    partial = copy.deepcopy(doc)
    del partial["provenance"]["pillow"]
    with pytest.raises(ValueError, match="provenance.*pillow"):
        evaluate.validate_metrics(partial)
    old = copy.deepcopy(doc)
    for k in provenance.PACKAGES[3:] + ("klrpn",):
        del old["provenance"][k], old["provenance"]["train"][k]
    evaluate.validate_metrics(old)
    bad = copy.deepcopy(doc)
    bad["provenance"]["numpy"] = 2.4
    with pytest.raises(ValueError, match="provenance.numpy"):
        evaluate.validate_metrics(bad)
