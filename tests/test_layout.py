"""klrpn.layout: run folders of a cell, a seed and a list of --set overrides."""

import hashlib
import re
from pathlib import Path

import pytest

from klrpn import layout
from klrpn.layout import overrides_dir, overrides_hash, results_of_run, run_dir

CELL = "voc07-rfcn-resnet101-klrpn"
LR = {"train.lr": 0.002}


def test_overrides_hash_is_the_sha256_of_the_canonical_json():
    assert overrides_hash(LR) == hashlib.sha256(b'{"train.lr":0.002}').hexdigest()[:12]
    two = {"train.lr": 0.002, "input.min_size": [96, 128]}
    assert overrides_hash(two) == overrides_hash(dict(reversed(two.items())))  # order: none
    assert overrides_hash(two) == \
        hashlib.sha256(b'{"input.min_size":[96,128],"train.lr":0.002}').hexdigest()[:12]
    assert len({overrides_hash(LR), overrides_hash({"train.lr": 0.003}),
                overrides_hash({"train.lr": 0.002, "seed": 1})}) == 3


def test_run_dir_of_overrides_and_seeds():
    h = overrides_hash(LR)
    assert overrides_dir(None) == overrides_dir({}) == ""
    assert overrides_dir(LR) == f"set-{h}/"
    assert run_dir("results", CELL) == Path("results") / CELL
    assert run_dir("results", CELL, 0, {}) == Path("results") / CELL
    assert run_dir("results", CELL, 0, LR) == Path(f"results/set-{h}/{CELL}")
    assert run_dir("results", CELL, 2, LR) == Path(f"results/set-{h}/seed2/{CELL}")
    assert run_dir("results", CELL, 2) == Path(f"results/seed2/{CELL}")


@pytest.mark.parametrize("seed, overrides", [(0, None), (3, None), (0, LR), (3, LR)])
def test_results_of_run_inverts_run_dir(seed, overrides):
    folder = run_dir("out/results", CELL, seed, overrides)
    assert results_of_run(folder) == Path("out/results")
    assert run_dir(results_of_run(folder), CELL, seed, overrides) == folder


def test_an_overrides_folder_is_no_cell_seed_or_stale_folder_and_no_pipeline_run():
    folder = overrides_dir(LR).rstrip("/")
    assert not folder.startswith((layout.STALE_PREFIX, layout.SEED_FOLDER_PREFIX))
    assert not re.fullmatch(r"(coco|voc0712|voc07)-.*", folder)   # cell ids start with a dataset
    with pytest.raises(ValueError):
        layout.seed_of_seed_dir(folder + "/")
    # the Snakemake train / evaluate outputs: {results}/{seeddir}{cell} under their constraints
    pattern = re.compile(rf"results/{layout.SEED_DIR_PATTERN}(?P<cell>{re.escape(CELL)})")
    assert pattern.fullmatch(run_dir("results", CELL, 2).as_posix())
    assert not pattern.fullmatch(run_dir("results", CELL, 0, LR).as_posix())
    assert not pattern.fullmatch(run_dir("results", CELL, 2, LR).as_posix())
