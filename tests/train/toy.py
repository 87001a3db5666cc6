"""A toy detector stand-in and batch stream for the training-loop tests.

``ToyModel(images, targets) -> {"loss_fit", "loss_aux"}`` like the real detector's train mode:
it has a frozen layer, biases, and dropout (so it draws from the torch RNG every step, which
makes the resume test sensitive to RNG restoring). ``ToyBatches`` is endless, deterministic
per iteration index, and starts at ``start_iter`` like ``klrpn.data.build_train_loader``.

Run as a script it trains through :func:`klrpn.train.fit` (one process, or one per rank under
torchrun), optionally blocking at an iteration so a test can signal it there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

PARAMS_HASH = "0" * 64


class ToyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.frozen = nn.Linear(3, 3)
        self.frozen.requires_grad_(False)
        self.body = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))

    def forward(self, images, targets):
        x = torch.stack([im.mean(dim=(1, 2)) for im in images])
        y = torch.stack([t["y"] for t in targets])
        out = self.body(self.frozen(x))
        return {"loss_fit": ((out[:, 0] - y) ** 2).mean(), "loss_aux": 0.1 * (out[:, 1] ** 2).mean()}


class ToyBatches:
    """Batch ``i`` depends on (seed, i, rank) only; ``nan_at``: iteration (1-based) whose
    targets are NaN; ``block_at``: before yielding batch for that iteration, touch ``ready``
    and wait until ``go`` exists."""

    def __init__(self, *, seed=0, start_iter=0, batch_size=4, rank=0, nan_at=None,
                 block_at=None, ready=None, go=None):
        self.seed, self.start_iter, self.batch_size, self.rank = seed, start_iter, batch_size, rank
        self.nan_at, self.block_at, self.ready, self.go = nan_at, block_at, ready, go

    def __iter__(self):
        i = self.start_iter
        while True:
            if self.block_at is not None and i + 1 == self.block_at:
                Path(self.ready).touch()
                while not (self.go and Path(self.go).exists()):
                    time.sleep(0.05)
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + i * 101 + self.rank)
            images = [torch.rand(3, 8, 8, generator=g) for _ in range(self.batch_size)]
            ys = [im.mean() * 2 - 1 for im in images]
            if self.nan_at is not None and i + 1 == self.nan_at:
                ys = [torch.tensor(float("nan")) for _ in ys]
            yield images, [{"y": y, "image_id": k} for k, y in enumerate(ys)]
            i += 1


def toy_train_cfg(**over) -> dict:
    cfg = {"optimizer": "adam", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4,
           "adam_betas": [0.9, 0.999], "double_bias": True, "bias_decay": False,
           "schedule": {"unit": "iter", "length": 20, "steps": [15], "gamma": 0.1,
                        "warmup_iters": 3, "warmup_factor": 0.1}}
    cfg.update(over)
    return cfg


def build(train_cfg: dict, seed: int = 0):
    from klrpn import train

    torch.manual_seed(seed)
    model = ToyModel()
    optimizer = train.build_optimizer(model, train_cfg)
    max_iter, steps = train.schedule_in_iters(train_cfg["schedule"], None)
    scheduler = train.build_scheduler(optimizer, train_cfg["schedule"], steps)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return model, optimizer, scheduler, scaler, max_iter


def run(out_dir, *, max_iter=20, checkpoint_every=5, seed=0, nan_at=None, block_at=None,
        ready=None, go=None, params_hash=PARAMS_HASH, log=print):
    from klrpn import distributed as dist_utils
    from klrpn import train

    world = dist_utils.world_from_env()
    device = torch.device("cpu")
    dist_utils.init(world, device)
    try:
        tcfg = toy_train_cfg(schedule={"unit": "iter", "length": max_iter,
                                       "steps": [max(1, max_iter * 3 // 4)], "gamma": 0.1,
                                       "warmup_iters": 3, "warmup_factor": 0.1})
        model, optimizer, scheduler, scaler, max_iter = build(tcfg, seed)
        if world.size > 1:
            model = torch.nn.parallel.DistributedDataParallel(model)
        settings = train.LoopSettings(max_iter=max_iter, checkpoint_every=checkpoint_every,
                                      grad_clip_norm=1.0, params_hash=params_hash,
                                      images_per_step=4 * world.size, progress=False,
                                      cfg={"params_hash": params_hash, "toy": True})

        def make_batches(start_iter):
            return ToyBatches(seed=seed, start_iter=start_iter, rank=world.rank, nan_at=nan_at,
                              block_at=block_at if world.is_main else None, ready=ready, go=go)

        return train.fit(model, optimizer, scheduler, scaler, make_batches, out_dir=out_dir,
                         settings=settings, device=device, world=world, seed=seed, log=log)
    finally:
        dist_utils.shutdown()


def main(argv=None) -> int:
    from klrpn.monitor import SIGTERM_EXIT, TrainingInterrupted

    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--max-iter", type=int, default=20)
    p.add_argument("--checkpoint-every", type=int, default=5)
    p.add_argument("--block-at", type=int, default=None)
    p.add_argument("--ready", default=None)
    p.add_argument("--go", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        run(a.out, max_iter=a.max_iter, checkpoint_every=a.checkpoint_every,
            block_at=a.block_at, ready=a.ready, go=a.go)
    except TrainingInterrupted:
        return SIGTERM_EXIT
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
