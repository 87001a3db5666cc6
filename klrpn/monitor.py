"""What the training loop reports and watches: the log, the divergence check, the stop flag.

None of this changes what is learned (it is outside the run identity, :mod:`klrpn.identity`):
:class:`TrainLog` writes ``train_log.csv`` (and TensorBoard events, a progress bar),
:func:`check_finite` stops a run whose loss became NaN/inf, :class:`StopFlag` turns SIGTERM
(SLURM pre-emption) or SIGINT into a checkpoint and a clean stop.
"""

from __future__ import annotations

import csv
import math
import signal
import sys
from pathlib import Path

from klrpn import checkpoint as ckpt
from klrpn.atomic import atomic_output
from klrpn.layout import TRAIN_LOG

SIGTERM_EXIT = 128 + signal.SIGTERM


class DivergenceError(FloatingPointError):
    """A loss term became NaN or infinite."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM/SIGINT arrived; a checkpoint was written at ``iteration``."""

    def __init__(self, iteration: int, path: Path | None):
        super().__init__(f"interrupted at iteration {iteration}; checkpoint {path}")
        self.iteration, self.path = iteration, path


# --- logging ------------------------------------------------------------------------------------

class TrainLog:
    """``train_log.csv`` (mandatory), TensorBoard events (when importable), a progress bar.
    Only the main process writes. On resume, rows after ``start_iter`` (written by the
    interrupted run after its last checkpoint) are dropped."""

    def __init__(self, out_dir: Path, *, start_iter: int, max_iter: int, enabled: bool = True,
                 progress: bool = True):
        self.enabled = enabled
        self.path = Path(out_dir) / TRAIN_LOG
        self.columns: list[str] | None = None
        self.file = self.writer = self.tb = self.bar = None
        if not enabled:
            return
        if self.path.exists():
            self._truncate(start_iter)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(Path(out_dir) / "tensorboard"), purge_step=start_iter + 1)
        except ImportError:
            self.tb = None
        if progress:
            from tqdm import tqdm
            self.bar = tqdm(total=max_iter, initial=start_iter, unit="it", dynamic_ncols=True,
                            mininterval=1.0 if sys.stderr.isatty() else 30.0)

    def _truncate(self, start_iter: int) -> None:
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        self.columns = rows[0]
        # a row cut short by a kill has fewer fields: dropped with those after the checkpoint
        kept = [r for r in rows[1:] if len(r) == len(self.columns) and int(r[0]) <= start_iter]
        with atomic_output(self.path) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([self.columns] + kept)

    def log(self, iteration: int, lr: float, losses: dict[str, float], images_per_s: float) -> None:
        if not self.enabled:
            return
        row = {"iteration": iteration, "lr": lr, **losses, "images_per_s": images_per_s}
        if self.file is None:
            if self.columns is None:
                self.columns = list(row)
                new = True
            else:
                new = False
                if set(self.columns) != set(row):
                    raise ValueError(f"{self.path}: columns {self.columns} differ from this run's "
                                     f"{list(row)}; use a fresh --out folder")
            self.file = open(self.path, "a" if not new else "w", newline="")
            self.writer = csv.DictWriter(self.file, fieldnames=self.columns)
            if new:
                self.writer.writeheader()
        self.writer.writerow(row)
        self.file.flush()
        if self.tb is not None:
            for key, value in row.items():
                if key != "iteration":
                    self.tb.add_scalar(f"train/{key}", value, iteration)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{losses['total']:.4f}", lr=f"{lr:.2e}",
                                 img_s=f"{images_per_s:.1f}", refresh=False)
            self.bar.update(iteration - self.bar.n)

    def close(self) -> None:
        for thing in (self.file, self.tb, self.bar):
            if thing is not None:
                thing.close()


def check_finite(names: list[str], values: list[float], iteration: int, out_dir: Path) -> None:
    """Raise :class:`DivergenceError` naming the iteration and the first non-finite term."""
    bad = [(n, v) for n, v in zip(names, values) if not math.isfinite(v)]
    if bad:
        name, value = bad[0]
        latest = ckpt.find_latest(out_dir)
        kept = f"the last good checkpoint is {latest}" if latest else "no checkpoint was written yet"
        raise DivergenceError(f"training diverged at iteration {iteration}: loss term {name!r} is "
                              f"{value} ({', '.join(f'{n}={v:.4g}' for n, v in zip(names, values))}); "
                              f"stopped; {kept}")


# --- signals ------------------------------------------------------------------------------------

class StopFlag:
    """Set by SIGTERM (SLURM pre-emption) or SIGINT; the loop checkpoints and stops."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self) -> "StopFlag":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, _frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
