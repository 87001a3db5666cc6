"""Optimiser groups, lr schedule, epoch length, AMP choice."""

import pytest
import torch
from toy import ToyModel, toy_train_cfg

from klrpn import train


def test_lr_factor_warmup_then_steps():
    kw = dict(steps=[10, 20], gamma=0.1, warmup_iters=4, warmup_factor=0.01)
    assert train.lr_factor(0, **kw) == pytest.approx(0.01)
    assert train.lr_factor(2, **kw) == pytest.approx(0.01 * 0.5 + 0.5)
    assert train.lr_factor(4, **kw) == 1.0
    assert train.lr_factor(9, **kw) == 1.0
    assert train.lr_factor(10, **kw) == pytest.approx(0.1)
    assert train.lr_factor(25, **kw) == pytest.approx(0.01)


def test_scheduler_drives_both_groups():
    model = ToyModel()
    cfg = toy_train_cfg(optimizer="sgd")
    opt = train.build_optimizer(model, cfg)
    sched = train.build_scheduler(opt, cfg["schedule"], [15])
    lrs = []
    for _ in range(16):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx([0.001, 0.002])          # warm-up factor 0.1, biases x2
    assert lrs[3] == pytest.approx([0.01, 0.02])
    assert lrs[15] == pytest.approx([0.001, 0.002])         # decayed at iteration 15


def test_optimizer_groups_follow_baseline():
    model = ToyModel()
    opt = train.build_optimizer(model, toy_train_cfg(optimizer="sgd", weight_decay=5e-4))
    assert isinstance(opt, torch.optim.SGD)
    weights, biases = opt.param_groups
    assert all(p.dim() == 2 for p in weights["params"]) and all(p.dim() == 1 for p in biases["params"])
    assert weights["weight_decay"] == 5e-4 and biases["weight_decay"] == 0.0
    assert biases["lr"] == 2 * weights["lr"] and weights["momentum"] == 0.9
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not any(id(p) in trained for p in model.frozen.parameters())
    assert len(trained) == sum(1 for p in model.parameters() if p.requires_grad)

    opt = train.build_optimizer(model, toy_train_cfg(double_bias=False, bias_decay=True))
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["betas"] == (0.9, 0.999)
    assert opt.param_groups[1]["lr"] == opt.param_groups[0]["lr"]
    assert opt.param_groups[1]["weight_decay"] == opt.param_groups[0]["weight_decay"]


def test_no_trainable_parameters_is_an_error():
    model = ToyModel().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train.build_optimizer(model, toy_train_cfg())


def test_epoch_schedule_counts_flipped_copies():
    assert train.iters_per_epoch(100, 16, flip=True) == 12     # int(200 / 16)
    assert train.iters_per_epoch(100, 16, flip=False) == 6
    assert train.schedule_in_iters({"unit": "epoch", "length": 6, "steps": [4]}, 12) == (72, [48])
    assert train.schedule_in_iters({"unit": "iter", "length": 300, "steps": [240]}, None) == (300, [240])
    with pytest.raises(ValueError, match="shorter than one batch"):
        train.iters_per_epoch(3, 16, flip=False)


def test_amp_dtype():
    cpu = torch.device("cpu")
    assert train.amp_dtype(True, cpu) is None
    assert train.amp_dtype(True, torch.device("cuda"), "off") is None
    assert train.amp_dtype(True, torch.device("cuda"), "fp16") is torch.float16
    assert train.amp_dtype(False, torch.device("cuda")) is None
    assert train.amp_dtype(False, torch.device("cuda"), "bf16") is torch.bfloat16  # --amp wins
    assert train.amp_dtype(True, cpu, "bf16") is None
