"""Fixtures of the training tests: the toy stand-ins live in toy.py next to this file."""

from __future__ import annotations

import shutil
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


REPO = HERE.parents[1]
PROFILE_SECTIONS = ("by_format", "by_backbone", "by_detector", "by_proposal")


def shortened_smoke_params(dst: Path, *, length: int, checkpoint_every: int, steps: list[int],
                           warmup_iters: int = 5, rfcn_scales: list[int] | None = None) -> Path:
    """A copy of the repository's params/ at ``dst`` whose smoke profile trains every cell for
    ``length`` iterations (no per-section schedule overrides), checkpointing every
    ``checkpoint_every``; ``rfcn_scales`` makes the R-FCN cells multi-scale if the profile
    does not already."""
    import yaml

    shutil.copytree(REPO / "params", dst)
    path = dst / "profiles" / "smoke.yaml"
    data = yaml.safe_load(path.read_text())
    data["all"]["train"]["schedule"].update(length=length, steps=steps, warmup_iters=warmup_iters)
    data["all"]["train"]["checkpoint_every"] = checkpoint_every
    for section in PROFILE_SECTIONS:
        for override in (data.get(section) or {}).values():
            override.get("train", {}).pop("schedule", None)
    if rfcn_scales:
        rfcn = data.setdefault("by_detector", {}).setdefault("rfcn", {}).setdefault("input", {})
        if len(rfcn.get("min_size", [])) < 2:
            rfcn["min_size"] = list(rfcn_scales)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return dst


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
