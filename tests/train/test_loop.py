"""The training loop on the toy model: learning, divergence guard, in-process resume, log."""

import csv

import pytest
import torch
from conftest import final_weights
from toy import PARAMS_HASH, ToyBatches, build, run, toy_train_cfg

from klrpn import checkpoint as ckpt
from klrpn import monitor, train


def read_log(out_dir):
    with open(out_dir / "train_log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_loss_falls_and_final_model_written(tmp_path):
    run(tmp_path, max_iter=60, checkpoint_every=20, log=lambda *a: None)
    rows = read_log(tmp_path)
    assert [int(r["iteration"]) for r in rows] == list(range(1, 61))
    assert set(rows[0]) == {"iteration", "lr", "loss_fit", "loss_aux", "total", "images_per_s"}
    first = sum(float(r["total"]) for r in rows[:10]) / 10
    last = sum(float(r["total"]) for r in rows[-10:]) / 10
    assert last < 0.5 * first
    final = torch.load(tmp_path / "model_final.pt", weights_only=True)
    assert final["iteration"] == 60 and final["cfg"]["params_hash"] == PARAMS_HASH
    assert [it for it, _ in ckpt.list_checkpoints(tmp_path)] == [20, 40, 60]
    assert float(rows[0]["lr"]) == pytest.approx(0.001)  # warm-up from 0.1 x lr


def test_planted_nan_stops_with_named_error_and_keeps_checkpoint(tmp_path):
    with pytest.raises(monitor.DivergenceError) as err:
        run(tmp_path, max_iter=20, checkpoint_every=5, nan_at=8, log=lambda *a: None)
    msg = str(err.value)
    assert "iteration 8" in msg and "'loss_fit'" in msg and "iter_0000005.pt" in msg
    assert [it for it, _ in ckpt.list_checkpoints(tmp_path)] == [5]
    assert torch.load(ckpt.checkpoint_path(tmp_path, 5), weights_only=True)["iteration"] == 5
    assert not (tmp_path / "model_final.pt").exists()
    assert max(int(r["iteration"]) for r in read_log(tmp_path)) == 7


def test_nan_on_a_checkpoint_step_is_caught_before_that_checkpoint(tmp_path):
    """Losses are read one step late (PendingLosses), but always before a checkpoint: a NaN at
    a checkpoint iteration never reaches checkpoints/."""
    with pytest.raises(monitor.DivergenceError, match="iteration 10"):
        run(tmp_path, max_iter=20, checkpoint_every=5, nan_at=10, log=lambda *a: None)
    assert [it for it, _ in ckpt.list_checkpoints(tmp_path)] == [5]
    assert max(int(r["iteration"]) for r in read_log(tmp_path)) == 9


def test_pending_losses_read_back_the_values():
    values = torch.tensor([0.25, float("nan"), 1.5])
    assert train.PendingLosses(values).read()[::2] == [0.25, 1.5]


def test_resume_in_process_is_bitwise_equal(tmp_path):
    run(tmp_path / "straight", max_iter=12, checkpoint_every=4, log=lambda *a: None)
    with pytest.raises(monitor.DivergenceError):     # crash at step 10, after checkpoint 8
        run(tmp_path / "crashed", max_iter=12, checkpoint_every=4, nan_at=10, log=lambda *a: None)
    run(tmp_path / "crashed", max_iter=12, checkpoint_every=4, log=lambda *a: None)
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "crashed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = read_log(tmp_path / "crashed")   # the crashed run's row 9 was dropped, then rewritten
    assert [int(r["iteration"]) for r in rows] == list(range(1, 13))
    assert [r["total"] for r in rows] == [r["total"] for r in read_log(tmp_path / "straight")]


def test_resume_refuses_checkpoint_of_other_params(tmp_path):
    run(tmp_path, max_iter=4, checkpoint_every=2, log=lambda *a: None)
    (tmp_path / "model_final.pt").unlink()
    with pytest.raises(ckpt.CheckpointError, match="params hash"):
        run(tmp_path, max_iter=4, checkpoint_every=2, params_hash="1" * 64, log=lambda *a: None)


def test_gradient_clipping_bounds_the_update(tmp_path):
    schedule = {"unit": "iter", "length": 1, "steps": [], "gamma": 0.1, "warmup_iters": 0,
                "warmup_factor": 0.1}
    model, opt, sched, scaler, _ = build(toy_train_cfg(optimizer="sgd", lr=1.0, momentum=0.0,
                                                       weight_decay=0.0, double_bias=False,
                                                       schedule=schedule))
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    settings = train.LoopSettings(max_iter=1, checkpoint_every=10, grad_clip_norm=1e-3,
                                  params_hash=PARAMS_HASH, progress=False)
    train.train_loop(model, opt, sched, scaler, ToyBatches(), out_dir=tmp_path, start_iter=0,
                     settings=settings, device=torch.device("cpu"))
    after = [p.detach() for p in model.parameters() if p.requires_grad]
    step = torch.cat([(a - b).flatten() for a, b in zip(after, before)]).norm()
    assert 0 < step <= 1e-3 * (1 + 1e-4)
