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
