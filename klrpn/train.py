"""Training: one cell from its params to ``results/CELL/model_final.pt``.

The loop (:func:`train_loop`) is the whole story; everything else builds its arguments:

    for each batch:                              (the loader resumes at start_iter by itself)
        losses = model(images, targets)          (autocast on CUDA when train.amp)
        backward, clip (train.grad_clip_norm), optimizer step, scheduler step
        the previous step's losses: stop if one is NaN/inf (DivergenceError names iteration
            and term), log a CSV row (+ TensorBoard), progress bar
        checkpoint every train.checkpoint_every iterations, at the end, and on SIGTERM
            (this step's losses are checked first)

Losses reach the host one step late so that reading them never makes the host wait for the
device (:class:`PendingLosses`); numerics are unchanged.

Iteration N means the N-th optimiser step; ``checkpoints/iter_N.pt`` holds the state after it.
Rerunning :func:`fit` continues from the newest checkpoint: model, optimiser, scheduler,
scaler, RNG states, and the loader replays its deterministic stream up to ``start_iter``.

This module is training code of the run identity (:data:`klrpn.layout.TRAINING_CODE`): only what
can change the learned weights lives here. Launching (device and GPU choice, torchrun, the run
lock, stale runs) is :mod:`klrpn.launch`; logging and the stop flag are :mod:`klrpn.monitor`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from klrpn import checkpoint as ckpt
from klrpn import distributed as dist_utils
from klrpn.distributed import World
from klrpn.monitor import SIGTERM_EXIT, StopFlag, TrainingInterrupted, TrainLog, check_finite


# --- optimiser and schedule ---------------------------------------------------------------------

def is_bias(name: str) -> bool:
    return name == "bias" or name.endswith(".bias")


def build_optimizer(model: torch.nn.Module, train: dict) -> torch.optim.Optimizer:
    """SGD with momentum or Adam over the trainable parameters, in two groups as the baseline
    (jwyang/faster-rcnn.pytorch trainval_net.py): weights at ``lr`` with ``weight_decay``;
    biases at ``lr * (2 if double_bias)`` with weight decay only if ``bias_decay``."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters")
    lr, wd = float(train["lr"]), float(train["weight_decay"])
    weights = [p for n, p in named if not is_bias(n)]
    biases = [p for n, p in named if is_bias(n)]
    groups = []
    if weights:
        groups.append({"params": weights, "lr": lr, "weight_decay": wd})
    if biases:
        groups.append({"params": biases, "lr": lr * (2.0 if train["double_bias"] else 1.0),
                       "weight_decay": wd if train["bias_decay"] else 0.0})
    if train["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(train["momentum"]))
    if train["optimizer"] == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=tuple(float(b) for b in train["adam_betas"]))
    raise ValueError(f"train.optimizer: unknown optimizer {train['optimizer']!r} (sgd or adam)")


def iters_per_epoch(num_images: int, batch_size: int, flip: bool) -> int:
    """Baseline epoch length: its roidb holds every image plus, with flipping, its mirror
    (TRAIN.USE_FLIPPED), and ``iters_per_epoch = int(len(roidb) / batch_size)``
    (jwyang/faster-rcnn.pytorch trainval_net.py). ``num_images`` counts the training set as
    built, i.e. without the images lacking boxes when ``dataset.drop_empty_train`` (roidb.py
    filter_roidb drops them from the roidb, mirrors included)."""
    ipe = (num_images * (2 if flip else 1)) // batch_size
    if ipe < 1:
        raise ValueError(f"an epoch of {num_images} images is shorter than one batch of {batch_size}")
    return ipe


def schedule_in_iters(schedule: dict, ipe: int | None) -> tuple[int, list[int]]:
    """``(max_iter, lr step iterations)`` from ``train.schedule`` (``ipe`` for unit epoch)."""
    if schedule["unit"] == "iter":
        return int(schedule["length"]), [int(s) for s in schedule["steps"]]
    if ipe is None:
        raise ValueError("train.schedule.unit is 'epoch' but the epoch length is unknown")
    return int(schedule["length"]) * ipe, [int(s) * ipe for s in schedule["steps"]]


def lr_factor(it: int, *, steps: list[int], gamma: float, warmup_iters: int,
              warmup_factor: float) -> float:
    """Multiplier of the base lr for the step after ``it`` finished steps: linear warm-up from
    ``warmup_factor`` over ``warmup_iters``, times ``gamma`` per decay step already passed."""
    factor = gamma ** sum(1 for s in steps if it >= s)
    if it < warmup_iters:
        alpha = it / warmup_iters
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


def build_scheduler(optimizer, schedule: dict, steps: list[int]) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(it: int) -> float:
        return lr_factor(it, steps=steps, gamma=float(schedule["gamma"]),
                         warmup_iters=int(schedule["warmup_iters"]),
                         warmup_factor=float(schedule["warmup_factor"]))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def amp_dtype(enabled: bool, device: torch.device, choice: str | None = None) -> torch.dtype | None:
    """Autocast dtype on CUDA (None = fp32): ``choice`` ("bf16" | "fp16" | "off", the --amp
    option) if given, else when ``enabled`` (train.amp) bf16 where supported, else fp16."""
    if device.type != "cuda" or choice == "off":
        return None
    if choice is not None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}[choice]
    if not enabled:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


# --- the loop -----------------------------------------------------------------------------------

@dataclass
class LoopSettings:
    max_iter: int
    checkpoint_every: int
    grad_clip_norm: float | None = None
    amp_dtype: torch.dtype | None = None
    params_hash: str = ""
    images_per_step: int = 1           # global batch, for images/s
    progress: bool = True
    cfg: dict = field(default_factory=dict)  # stored in model_final.pt


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def to_device(images, targets, device: torch.device):
    images = [im.to(device, non_blocking=True) for im in images]
    targets = [{k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
                for k, v in t.items()} for t in targets]
    return images, targets


def save_checkpoint(out_dir: Path, iteration: int, model, optimizer, scheduler, scaler,
                    world: World, settings: LoopSettings, wall_time_s: float) -> Path | None:
    """All ranks gather their RNG states; rank 0 writes ``iter_N.pt`` and prunes old ones."""
    rng = dist_utils.gather_objects(ckpt.capture_rng())
    path = None
    if world.is_main:
        path = ckpt.atomic_save({
            "iteration": iteration,
            "model": unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng,
            "world_size": world.size,
            "params_hash": settings.params_hash,
            "run_identity": settings.cfg.get("run_identity"),
            "wall_time_s": wall_time_s,
        }, ckpt.checkpoint_path(out_dir, iteration))
        ckpt.prune(out_dir)
    dist_utils.barrier()
    return path


def forward_losses(model, images, targets, amp: torch.dtype | None):
    """``(total loss tensor, names, values)``: the model's loss terms and their sum; ``values``
    [len(names)] stays on the device, averaged over the processes for logging. Read it through
    :class:`PendingLosses` so that the host does not wait for the device."""
    with torch.autocast(images[0].device.type, dtype=amp, enabled=amp is not None):
        losses = model(images, targets)
    total = sum(losses.values())
    values = dist_utils.mean_over_ranks(torch.stack([*losses.values(), total]).detach().float())
    return total, [*losses, "total"], values


class PendingLosses:
    """One step's loss values on their way to the host. The copy is queued behind the forward
    pass (pinned memory on CUDA) and read one step later, once the next step's work is queued:
    the host never drains the device's queue to log a loss (on the CPU it is a plain copy)."""

    def __init__(self, values: Tensor):
        self.host = values.detach().to("cpu", non_blocking=True)  # [len(names)]
        self.ready = None
        if values.is_cuda:
            self.ready = torch.cuda.Event()
            self.ready.record()

    def read(self) -> list[float]:
        if self.ready is not None:
            self.ready.synchronize()  # waits for this step's forward only, not the queue after it
        return self.host.tolist()


def apply_update(total, optimizer, scaler, params, grad_clip_norm: float | None) -> None:
    """Backward (scaled for fp16), optional gradient-norm clipping, optimiser step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    if grad_clip_norm:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, grad_clip_norm)
    scaler.step(optimizer)
    scaler.update()


def train_loop(model, optimizer, scheduler, scaler, batches, *, out_dir: Path, start_iter: int,
               settings: LoopSettings, device: torch.device, world: World = World(),
               stop: StopFlag | None = None, wall_time_s: float = 0.0) -> tuple[int, float]:
    """Run optimiser steps ``start_iter+1 .. settings.max_iter``; returns
    ``(last iteration, accumulated wall time)``. ``batches`` yields ``(images, targets)`` from
    ``start_iter`` on. Raises :class:`DivergenceError` or :class:`TrainingInterrupted`."""
    out_dir = Path(out_dir)
    stop = stop or StopFlag()
    params = [p for p in unwrap(model).parameters() if p.requires_grad]
    log = TrainLog(out_dir, start_iter=start_iter, max_iter=settings.max_iter,
                   enabled=world.is_main, progress=settings.progress)
    segment_start = time.perf_counter()
    it, batch_iter = start_iter, iter(batches)
    # A step's losses are checked and logged one step late (PendingLosses), and always before a
    # checkpoint is written: a non-finite loss stops the run before it can reach a checkpoint.
    pending: tuple[int, float, list[str], PendingLosses, float] | None = None

    def settle(now: float) -> None:
        nonlocal pending
        if pending is None:
            return
        step, lr, names, losses, started = pending
        pending = None
        values = losses.read()
        check_finite(names, values, step, out_dir)
        log.log(step, lr, dict(zip(names, values)),
                settings.images_per_step / max(now - started, 1e-9))

    model.train()
    try:
        while it < settings.max_iter:
            t0 = time.perf_counter()
            images, targets = to_device(*next(batch_iter), device)
            total, names, values = forward_losses(model, images, targets, settings.amp_dtype)
            apply_update(total, optimizer, scaler, params, settings.grad_clip_norm)
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            it += 1
            settle(t0)  # the previous step, timed from its start to this step's
            pending = (it, lr, names, PendingLosses(values), t0)

            stopping = dist_utils.any_rank(stop.requested, device)
            if it % settings.checkpoint_every == 0 or it == settings.max_iter or stopping:
                settle(time.perf_counter())
                elapsed = wall_time_s + time.perf_counter() - segment_start
                path = save_checkpoint(out_dir, it, model, optimizer, scheduler, scaler, world,
                                       settings, elapsed)
                if stopping:
                    raise TrainingInterrupted(it, path)
    finally:
        log.close()
    return it, wall_time_s + time.perf_counter() - segment_start


def resume(out_dir: Path, model, optimizer, scheduler, scaler, *, params_hash: str,
           world: World = World(), seed: int = 0, log=print) -> tuple[int, float]:
    """Load the newest checkpoint of ``out_dir`` into the objects; ``(iteration, wall time)``,
    or ``(0, 0.0)`` and per-rank seeding when there is none."""
    if world.is_main:
        ckpt.clean_partial(out_dir)
    dist_utils.barrier()
    path = ckpt.find_latest(out_dir)
    if path is None:
        seed_everything(seed + world.rank)
        return 0, 0.0
    state = ckpt.load(path)
    if state.get("params_hash") != params_hash:
        raise ckpt.CheckpointError(
            f"{path} was written with params hash {state.get('params_hash')!r} but the config now "
            f"resolves to {params_hash!r}: restore the params or train into a fresh --out folder")
    unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    iteration = int(state["iteration"])
    if len(state["rng"]) == world.size:
        ckpt.restore_rng(state["rng"][world.rank])
    else:
        log(f"{path}: written by {len(state['rng'])} process(es), resuming with {world.size}: "
            "random streams are re-seeded (the run stays valid but not bitwise reproducible)")
        seed_everything(seed + world.rank + 1000003 * iteration)
    log(f"resuming from {path} (iteration {iteration})")
    return iteration, float(state["wall_time_s"])


def fit(model, optimizer, scheduler, scaler, make_batches, *, out_dir: Path | str,
        settings: LoopSettings, device: torch.device, world: World = World(), seed: int = 0,
        provenance: dict | None = None, log=print) -> Path:
    """Resume (if possible), run the loop, write ``model_final.pt``. ``make_batches(start_iter)``
    returns the batch iterable for this rank starting after ``start_iter`` steps."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start_iter, wall = resume(out_dir, model, optimizer, scheduler, scaler,
                              params_hash=settings.params_hash, world=world, seed=seed, log=log)
    with StopFlag() as stop:
        it, wall = train_loop(model, optimizer, scheduler, scaler, make_batches(start_iter),
                              out_dir=out_dir, start_iter=start_iter, settings=settings,
                              device=device, world=world, stop=stop, wall_time_s=wall)
    final = out_dir / ckpt.FINAL_NAME
    if world.is_main:
        state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
        ckpt.save_final(out_dir, state, settings.cfg, it, wall_time_s=wall,
                        provenance=provenance or {})
        log(f"wrote {final} (iteration {it}, {wall:.1f} s of training)")
    dist_utils.barrier()
    return final


# --- one cell ------------------------------------------------------------------------------------

def run_cell(cfg: dict, out_dir: Path, device: torch.device, world: World,
             amp: str | None = None, log=print) -> int:
    """Build everything from ``cfg`` and :func:`fit`; returns 0, or 143 after SIGTERM."""
    from klrpn.data import build_dataset, build_train_loader
    from klrpn.provenance import provenance_at_train
    from klrpn.models import build_model

    t = cfg["train"]
    if not world.is_main:
        log = lambda *args, **kwargs: None  # noqa: E731  (one voice: rank 0)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist_utils.init(world, device)
    try:
        if t["batch_size"] % world.size:
            raise ValueError(f"train.batch_size {t['batch_size']} cannot be split over "
                             f"{world.size} processes")
        seed_everything(cfg["seed"])  # identical initial weights on every rank
        model = build_model(cfg).to(device)
        if device.type == "cuda":
            # input.pad_multiple keeps the input shapes few, so each is autotuned once
            torch.backends.cudnn.benchmark = bool(t["cudnn_benchmark"])
            if t["channels_last"]:
                model = model.to(memory_format=torch.channels_last)
        dataset = build_dataset(cfg, "train", train=True)
        ipe = iters_per_epoch(len(dataset), t["batch_size"], bool(cfg["input"]["flip"]))
        max_iter, steps = schedule_in_iters(t["schedule"], ipe)
        optimizer = build_optimizer(model, t)
        scheduler = build_scheduler(optimizer, t["schedule"], steps)
        dtype = amp_dtype(t["amp"], device, amp)
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        if world.size > 1:
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None,
                **dist_utils.no_per_step_buffer_sync())
        per_rank = t["batch_size"] // world.size

        def make_batches(start_iter: int):
            return build_train_loader(dataset, batch_size=per_rank, seed=cfg["seed"],
                                      rank=world.rank, world_size=world.size,
                                      start_iter=start_iter, aspect_grouping=t["aspect_grouping"],
                                      num_workers=t["num_workers"], pin_memory=device.type == "cuda")

        settings = LoopSettings(max_iter=max_iter, checkpoint_every=t["checkpoint_every"],
                                grad_clip_norm=t["grad_clip_norm"], amp_dtype=dtype,
                                params_hash=cfg["params_hash"], images_per_step=t["batch_size"],
                                cfg=cfg)
        if world.is_main:
            log(f"{cfg['cell']} ({cfg['profile']}): {max_iter} iterations of {t['batch_size']} "
                f"images on {world.size} x {device.type}, {t['optimizer']} lr {t['lr']}, "
                f"amp {dtype}, {len(dataset)} training images -> {out_dir}")
        provenance = {**provenance_at_train(device, world.size, dtype),
                      "run_identity": cfg.get("run_identity")}
        fit(model, optimizer, scheduler, scaler, make_batches, out_dir=out_dir, settings=settings,
            device=device, world=world, seed=cfg["seed"], provenance=provenance, log=log)
    except TrainingInterrupted as stop:
        log(f"stopped by signal at iteration {stop.iteration}; checkpoint {stop.path}; rerun the "
            "same command to continue")
        return SIGTERM_EXIT
    finally:
        dist_utils.shutdown()
    return 0
