"""The infinite, deterministic, resumable training loader.

One global stream of batches is derived from the seed alone: epoch ``e`` visits the images in
the order ``numpy.random.default_rng([seed, e]).permutation(n)`` and draws one flip bit per
image from the same generator. With aspect grouping, images go to a landscape (w >= h) or a
portrait buffer and a global batch (``batch_size * world_size`` images) is emitted whenever a
buffer fills, so every batch has one orientation; buffers carry over between epochs, so no
image is dropped. Rank ``r`` takes slice ``[r * batch_size, (r + 1) * batch_size)`` of each
global batch. Resuming at ``start_iter`` replays the index stream (cheap: no image is read)
and drops the first ``start_iter`` batches, so what follows equals an uninterrupted run.

Each global batch ``b`` also draws its training short side from ``min_sizes``, with
``numpy.random.default_rng([seed, 1, b])``: one per batch, as RFCN_CoupleNet.pytorch's loader
(``resize_batch``) does for its multi-scale training; and slot ``j`` of it the seed of its item's
own draws (aspect crop, box cap: :class:`klrpn.data.base.TrainDraw`) from
``SeedSequence([seed, 2, b, j])``. Both depend on the batch number alone, so they replay on
resume and leave the order / flip stream unchanged.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import torch

from klrpn.data.base import TrainDraw


def item_seed(seed: int, batch_number: int, slot: int) -> int:
    """The seed of the crop / box-cap draws of slot ``slot`` of global batch ``batch_number``."""
    return int(np.random.SeedSequence([seed, 2, batch_number, slot]).generate_state(1)[0])


class TrainBatches:
    """Iterable of per-rank batches ``[TrainDraw(index, flip, size, seed), ...]``; endless."""

    def __init__(self, sizes: list[tuple[int, int]], *, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, start_iter: int = 0, aspect_grouping: bool = True,
                 flip: bool = False, min_sizes: Sequence[int] | None = None):
        if not sizes:
            raise ValueError("cannot build a training loader on an empty dataset")
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size or start_iter < 0:
            raise ValueError(f"bad loader arguments: batch_size={batch_size}, rank={rank}, "
                             f"world_size={world_size}, start_iter={start_iter}")
        if min_sizes is not None and (not min_sizes or min(min_sizes) < 1):
            raise ValueError(f"bad loader arguments: min_sizes={min_sizes} (training short sides)")
        self.groups = np.array([int(aspect_grouping and h > w) for w, h in sizes])
        self.batch_size, self.seed, self.rank = batch_size, seed, rank
        self.world_size, self.start_iter, self.flip = world_size, start_iter, flip
        self.min_sizes = tuple(int(s) for s in min_sizes) if min_sizes else None

    def short_side(self, batch_number: int) -> int | None:
        """The training short side of global batch ``batch_number`` (None: no list given)."""
        if self.min_sizes is None:
            return None
        if len(self.min_sizes) == 1:
            return self.min_sizes[0]
        rng = np.random.default_rng([self.seed, 1, batch_number])
        return self.min_sizes[int(rng.integers(len(self.min_sizes)))]

    def global_batches(self):
        """The endless stream of global batches shared by all ranks."""
        total = self.batch_size * self.world_size
        buffers = {0: [], 1: []}
        batch_number = 0
        for epoch in itertools.count():
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(len(self.groups))
            flips = rng.random(len(order)) < 0.5
            for index, flipped in zip(order.tolist(), flips.tolist()):
                buffer = buffers[int(self.groups[index])]
                buffer.append((index, bool(flipped and self.flip)))
                if len(buffer) == total:
                    size = self.short_side(batch_number)
                    yield [TrainDraw(i, f, size, item_seed(self.seed, batch_number, slot))
                           for slot, (i, f) in enumerate(buffer)]
                    buffer.clear()
                    batch_number += 1

    def __iter__(self):
        lo = self.rank * self.batch_size
        for batch in itertools.islice(self.global_batches(), self.start_iter, None):
            yield batch[lo:lo + self.batch_size]


def collate(batch: list) -> tuple[list, list]:
    """``[(image, target), ...]`` -> ``(list[image], list[target])``."""
    images, targets = zip(*batch)
    return list(images), list(targets)


def build_train_loader(dataset, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                       start_iter: int = 0, aspect_grouping: bool = True, num_workers: int = 0,
                       pin_memory: bool = False):
    """Endless iterable of ``(list[image [3, H, W]], list[target])`` batches for this rank;
    flips are drawn when ``dataset.flip`` is set, a training short side per batch from
    ``dataset.train_min_sizes`` (``target["train_size"]``). Workers keep the order (same
    batches for any ``num_workers``). ``pin_memory`` (for a CUDA run) returns the batches in
    page-locked memory, so that their non-blocking copies to the GPU are asynchronous: from
    pageable memory the host stages each image itself and waits whenever the staging buffer is
    full, i.e. behind the GPU's queue.

    The loader has a generator of its own: without one, each ``iter(loader)`` draws its workers'
    base seed from the global torch RNG, so a resumed run (RNG restored, then a new iterator)
    would be one draw off the uninterrupted run for every random choice after it."""
    batches = TrainBatches(dataset.sizes, batch_size=batch_size, seed=seed, rank=rank,
                           world_size=world_size, start_iter=start_iter,
                           aspect_grouping=aspect_grouping, flip=bool(getattr(dataset, "flip", False)),
                           min_sizes=getattr(dataset, "train_min_sizes", None))
    generator = torch.Generator().manual_seed(loader_seed(seed, rank, start_iter))
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                       num_workers=num_workers, generator=generator,
                                       pin_memory=pin_memory)


def loader_seed(seed: int, rank: int, start_iter: int) -> int:
    """Seed of the loader's own generator (its workers' base seed), a function of the run's
    seed, the rank and where the stream starts: never of the global RNG."""
    return int(np.random.SeedSequence([seed, rank, start_iter]).generate_state(1, np.uint64)[0])
