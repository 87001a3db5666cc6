"""A run with --seed N: trained and evaluated into run_dir(results, cell, N), its seed recorded,
its params hash its own; a variant id trains like a cell (issue 10)."""

import json
from pathlib import Path

import pytest

from klrpn import checkpoint as ckpt
from klrpn.cli import main
from klrpn.config import load_cell
from klrpn.layout import run_dir

pytestmark = pytest.mark.slow


def test_seed_run_goes_to_its_folder_and_records_its_seed(tiny_workspace):
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


def test_variant_id_trains_and_evaluates_like_a_cell(tiny_workspace):
    variant = "voc0712-faster_rcnn-vgg16-klrpn--meansigma"
    assert main(["train", variant, "--profile", "smoke"]) == 0
    assert main(["evaluate", variant, "--profile", "smoke"]) == 0
    doc = json.loads((Path("results") / variant / "metrics.json").read_text())
    assert doc["cell"] == variant and doc["table"] == 2 and doc["proposal"] == "klrpn"
