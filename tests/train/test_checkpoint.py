"""Checkpoint files: atomic, weights_only-loadable, pruned; RNG states round-trip."""

import random

import numpy as np
import pytest
import torch
from toy import PARAMS_HASH, ToyBatches, build, toy_train_cfg

from klrpn import checkpoint as ckpt
from klrpn import runs, train


def test_rng_states_round_trip():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    state = ckpt.capture_rng()
    first = (random.random(), np.random.normal(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ckpt.restore_rng(state)
    again = (random.random(), np.random.normal(), torch.rand(3))
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2])


def test_checkpoint_loads_with_weights_only(tmp_path):
    model, opt, sched, scaler, _ = build(toy_train_cfg())
    settings = train.LoopSettings(max_iter=4, checkpoint_every=2, params_hash=PARAMS_HASH,
                                  progress=False)
    train.train_loop(model, opt, sched, scaler, ToyBatches(), out_dir=tmp_path, start_iter=0,
                     settings=settings, device=torch.device("cpu"))
    path = ckpt.find_latest(tmp_path)
    assert path.name == "iter_0000004.pt"
    state = torch.load(path, weights_only=True)
    assert state["iteration"] == 4 and state["params_hash"] == PARAMS_HASH
    assert set(state) >= {"model", "optimizer", "scheduler", "scaler", "rng", "world_size"}
    assert isinstance(state["rng"][0]["torch"], torch.Tensor)
    assert state["scheduler"]["last_epoch"] == 4
    assert len(state["optimizer"]["state"]) == sum(p.requires_grad for p in model.parameters())


def test_atomic_save_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "checkpoints" / "iter_0000001.pt"

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        ckpt.atomic_save({"x": Unpicklable()}, target)
    assert list(target.parent.iterdir()) == []


def test_prune_find_latest_and_clean_partial(tmp_path):
    for it in (5, 10, 15, 20, 25):
        ckpt.atomic_save({"iteration": it}, ckpt.checkpoint_path(tmp_path, it))
    (tmp_path / "checkpoints" / ".iter_0000030.pt.tmp-123").write_bytes(b"half")
    ckpt.prune(tmp_path, keep=3)
    assert [it for it, _ in ckpt.list_checkpoints(tmp_path)] == [15, 20, 25]
    assert ckpt.find_latest(tmp_path).name == "iter_0000025.pt"
    ckpt.clean_partial(tmp_path)
    assert not list((tmp_path / "checkpoints").glob(".*"))
    assert ckpt.find_latest(tmp_path / "nothing") is None


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "checkpoints" / "iter_0000001.pt"
    bad.parent.mkdir()
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="iter_0000001.pt"):
        ckpt.load(bad)
    with pytest.raises(ckpt.CheckpointError, match="model_final.pt not found"):
        ckpt.load_final(tmp_path)


def test_load_final_model_rebuilds_the_real_detector(tmp_path):
    from klrpn.config import load_cell
    from klrpn.identity import combine
    from klrpn.models import build_model

    cfg = load_cell("coco-faster_rcnn-vgg16-klrpn", "smoke")
    cfg["run_identity"] = combine(cfg["params_hash"], "d" * 64, "c" * 64)
    torch.manual_seed(0)
    trained = build_model(cfg, load_pretrained=False)
    ckpt.save_final(tmp_path, trained.state_dict(), cfg, 7)
    model, loaded_cfg = ckpt.load_final_model(tmp_path)
    assert loaded_cfg == cfg and not model.training
    a, b = trained.state_dict(), model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    assert runs.already_trained(tmp_path, cfg, log=lambda *a: None)
    other = load_cell("coco-faster_rcnn-vgg16-rpn", "smoke")
    other["run_identity"] = combine(other["params_hash"], "d" * 64, "c" * 64)
    with pytest.raises(ckpt.CheckpointError, match="made with other params "):
        runs.already_trained(tmp_path, other)
    ckpt.save_final(tmp_path, {"nope": torch.zeros(1)}, cfg, 7)
    with pytest.raises(ckpt.CheckpointError, match="do not fit"):
        ckpt.load_final_model(tmp_path)
