"""A run with --set KEY=VALUE overrides: trained with the value (recorded in model_final.pt, the
optimiser and metrics.json), its params hash its own, in a run folder of its own that
`klrpn evaluate` with the same overrides finds; --seed applies as well; --out replaces the folder."""

import json
from pathlib import Path

import torch

from klrpn import checkpoint as ckpt
from klrpn.cli import main
from klrpn.config import load_cell
from klrpn.layout import overrides_hash, run_dir

CELL = "voc07-rfcn-resnet101-klrpn"   # smoke: Adam, lr 0.001, no double bias
LR = {"train.lr": 0.002}


def _initial_lrs(out: Path) -> list[float]:
    state = torch.load(ckpt.find_latest(out), weights_only=True)
    return [g["initial_lr"] for g in state["optimizer"]["param_groups"]]


def test_set_trains_with_the_value_into_a_folder_of_its_own(tiny_workspace, capsys):
    assert main(["train", CELL, "--profile", "smoke", "--set", "train.lr=0.002"]) == 0
    out = run_dir("results", CELL, 0, LR)
    assert out == Path("results") / f"set-{overrides_hash(LR)}" / CELL
    assert not (Path("results") / CELL).exists()          # the cell's own run is untouched
    assert "--set train.lr=0.002 (params hash " in capsys.readouterr().out
    final = ckpt.load_final(out)
    assert final["cfg"]["train"]["lr"] == 0.002 and final["cfg"]["overrides"] == LR
    own = load_cell(CELL, "smoke")["params_hash"]
    assert final["cfg"]["params_hash"] == load_cell(CELL, "smoke", overrides=LR)["params_hash"] != own
    assert _initial_lrs(out) == [0.002, 0.002]             # weights and biases: the lr used
    log = (out / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("iteration,lr,") and log[1].startswith("1,0.002,")  # no warm-up
    # the same overrides, spelled otherwise, find the same folder
    assert main(["evaluate", CELL, "--profile", "smoke", "--set", "train.lr=2e-3"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["provenance"]["overrides"] == LR
    assert doc["provenance"]["params_hash"] == final["cfg"]["params_hash"]
    # without --set, the cell's own folder: nothing trained there
    assert main(["evaluate", CELL, "--profile", "smoke"]) == 1


def test_set_with_seed_and_out(tiny_workspace):
    assert main(["train", CELL, "--profile", "smoke", "--seed", "1", "--set", "train.lr=0.002",
                 "--set", "train.double_bias=true"]) == 0
    both = {"train.double_bias": True, "train.lr": 0.002}
    out = run_dir("results", CELL, 1, both)
    assert out == Path("results") / f"set-{overrides_hash(both)}" / "seed1" / CELL
    assert _initial_lrs(out) == [0.002, 0.004]
    cfg = ckpt.load_final(out)["cfg"]
    assert (cfg["seed"], cfg["overrides"]) == (1, both)
    # --out replaces the folder: evaluating that run elsewhere needs the same --seed and --set
    assert main(["evaluate", CELL, "--profile", "smoke", "--seed", "1", "--out", str(out),
                 "--set", "train.double_bias=true", "--set", "train.lr=0.002"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["provenance"]["overrides"] == both and doc["provenance"]["seed"] == 1
    assert main(["evaluate", CELL, "--profile", "smoke", "--seed", "1", "--out", str(out),
                 "--set", "train.lr=0.002"]) == 1         # another params hash: refused
