"""Fixtures of the training tests: the toy stand-ins live in toy.py next to this file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny models: one intra-op thread keeps runs fast on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def toy_script() -> Path:
    return HERE / "toy.py"


def final_weights(out_dir) -> dict:
    return torch.load(Path(out_dir) / "model_final.pt", weights_only=True)["model"]


from helpers import REPO, shortened_smoke_params  # noqa: E402,F401  (re-exported)


def synthesize_for(params: Path, workdir: Path) -> Path:
    """Generate the synthetic data where ``params``' smoke profile reads it (relative to
    ``workdir``, the runs' working directory); returns the synthetic root."""
    from klrpn.config import list_cells, load_cell
    from klrpn.data.synthetic import generate

    roots = {Path(load_cell(c["id"], "smoke", params)["dataset"]["root"]).parent
             for c in list_cells(params)}
    (root,) = roots
    root = root if root.is_absolute() else workdir / root
    generate(root, seed=0, log=lambda *a: None)
    return root


@pytest.fixture
def tiny_workspace(tmp_path, monkeypatch):
    """A working directory with a tiny synthetic dataset (2-4 images a split) and params/ whose
    smoke profile trains 2 iterations of batch 1: a cell trains and evaluates in seconds."""
    from klrpn.data.synthetic import generate

    generate(tmp_path / "synthetic", seed=0, log=lambda *a: None,
             sizes={"coco/train2017": 2, "coco/val2017": 2, "VOC2007/trainval": 4,
                    "VOC2007/test": 3, "VOC2012/trainval": 4})
    shortened_smoke_params(tmp_path / "params", length=2, steps=[1], warmup_iters=0,
                           checkpoint_every=1, train={"batch_size": 1},
                           eval={"latency_images": 1, "latency_warmup": 0})
    monkeypatch.chdir(tmp_path)
    return tmp_path
