"""A checkout-like workspace for the seed reports (significance, proposals, ablations)."""

from __future__ import annotations

import shutil

import pytest

from report_runs import REPO


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """params/ and a small synthetic dataset under synthetic/ (where the smoke profile reads
    it); shared by every seed-report test (read-only)."""
    from klrpn.data.synthetic import generate

    root = tmp_path_factory.mktemp("reports")
    shutil.copytree(REPO / "params", root / "params")
    generate(root / "synthetic", seed=0, log=lambda *a: None,
             sizes={"coco/train2017": 4, "coco/val2017": 4, "VOC2007/trainval": 4,
                    "VOC2007/test": 30, "VOC2012/trainval": 4})
    return root


@pytest.fixture
def ws(workspace, monkeypatch, tmp_path):
    """``(workspace, results)``: the workspace as working directory and an empty results
    folder of this test's own."""
    monkeypatch.chdir(workspace)
    return workspace, tmp_path / "results"
