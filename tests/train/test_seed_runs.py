"""A run with --seed N: trained and evaluated into run_dir(results, cell, N), its seed recorded,
its params hash its own; a variant id trains like a cell (issue 10)."""

import json
from pathlib import Path

import pytest
from helpers import shortened_smoke_params

from klrpn import checkpoint as ckpt
from klrpn.cli import main
from klrpn.config import load_cell
from klrpn.layout import run_dir

pytestmark = pytest.mark.slow

@pytest.fixture
def workspace(tmp_path, monkeypatch):
    from klrpn.data.synthetic import generate

    generate(tmp_path / "synthetic", seed=0, log=lambda *a: None,
             sizes={"coco/train2017": 2, "coco/val2017": 2, "VOC2007/trainval": 4,
                    "VOC2007/test": 3, "VOC2012/trainval": 4})
    shortened_smoke_params(tmp_path / "params", length=2, steps=[1], warmup_iters=0,
                           checkpoint_every=1, train={"batch_size": 1},
                           eval={"latency_images": 1, "latency_warmup": 0})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_seed_run_goes_to_its_folder_and_records_its_seed(workspace):
    cell = "voc07-rfcn-resnet101-klrpn"
    assert main(["train", cell, "--profile", "smoke", "--seed", "3"]) == 0
    out = run_dir("results", cell, 3)
    assert out == Path("results/seed3") / cell and (out / ckpt.FINAL_NAME).is_file()
    final = ckpt.load_final(out)
    assert final["cfg"]["seed"] == 3
    assert final["cfg"]["params_hash"] == load_cell(cell, "smoke", seed=3)["params_hash"]
    assert main(["evaluate", cell, "--profile", "smoke", "--seed", "3"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["provenance"]["seed"] == 3 and doc["schema_version"] == 2
    assert doc["proposal_quality"]["ar_curve"]["100"] == doc["proposals"]["AR@100"]
    # without --seed the same cell is another run (seed 0, results/<cell>): nothing there yet
    assert main(["evaluate", cell, "--profile", "smoke"]) == 1


def test_variant_id_trains_and_evaluates_like_a_cell(workspace):
    variant = "voc0712-faster_rcnn-vgg16-klrpn--meansigma"
    assert main(["train", variant, "--profile", "smoke"]) == 0
    assert main(["evaluate", variant, "--profile", "smoke"]) == 0
    doc = json.loads((Path("results") / variant / "metrics.json").read_text())
    assert doc["cell"] == variant and doc["table"] == 2 and doc["proposal"] == "klrpn"
