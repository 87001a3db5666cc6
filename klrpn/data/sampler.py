"""The infinite, deterministic, resumable training loader.

One global stream of batches is derived from the seed alone: epoch ``e`` visits the images in
the order ``numpy.random.default_rng([seed, e]).permutation(n)`` and draws one flip bit per
image from the same generator. With aspect grouping, images go to a landscape (w >= h) or a
portrait buffer and a global batch (``batch_size * world_size`` images) is emitted whenever a
buffer fills, so every batch has one orientation; buffers carry over between epochs, so no
image is dropped. Rank ``r`` takes slice ``[r * batch_size, (r + 1) * batch_size)`` of each
global batch. Resuming at ``start_iter`` replays the index stream (cheap: no image is read)
and drops the first ``start_iter`` batches, so what follows equals an uninterrupted run.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch


class TrainBatches:
    """Iterable of per-rank batches ``[(index, flip), ...]``; endless."""

    def __init__(self, sizes: list[tuple[int, int]], *, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, start_iter: int = 0, aspect_grouping: bool = True,
                 flip: bool = False):
        if not sizes:
            raise ValueError("cannot build a training loader on an empty dataset")
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size or start_iter < 0:
            raise ValueError(f"bad loader arguments: batch_size={batch_size}, rank={rank}, "
                             f"world_size={world_size}, start_iter={start_iter}")
        self.groups = np.array([int(aspect_grouping and h > w) for w, h in sizes])
        self.batch_size, self.seed, self.rank = batch_size, seed, rank
        self.world_size, self.start_iter, self.flip = world_size, start_iter, flip

    def global_batches(self):
        """The endless stream of global batches shared by all ranks."""
        total = self.batch_size * self.world_size
        buffers = {0: [], 1: []}
        for epoch in itertools.count():
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(len(self.groups))
            flips = rng.random(len(order)) < 0.5
            for index, flipped in zip(order.tolist(), flips.tolist()):
                buffer = buffers[int(self.groups[index])]
                buffer.append((index, bool(flipped and self.flip)))
                if len(buffer) == total:
                    yield buffer[:]
                    buffer.clear()

    def __iter__(self):
        lo = self.rank * self.batch_size
        for batch in itertools.islice(self.global_batches(), self.start_iter, None):
            yield batch[lo:lo + self.batch_size]


def collate(batch: list) -> tuple[list, list]:
    """``[(image, target), ...]`` -> ``(list[image], list[target])``."""
    images, targets = zip(*batch)
    return list(images), list(targets)


def build_train_loader(dataset, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                       start_iter: int = 0, aspect_grouping: bool = True, num_workers: int = 0):
    """Endless iterable of ``(list[image [3, H, W]], list[target])`` batches for this rank;
    flips are drawn when ``dataset.flip`` is set. Workers keep the order (same batches for any
    ``num_workers``).

    The loader has a generator of its own: without one, each ``iter(loader)`` draws its workers'
    base seed from the global torch RNG, so a resumed run (RNG restored, then a new iterator)
    would be one draw off the uninterrupted run for every random choice after it."""
    batches = TrainBatches(dataset.sizes, batch_size=batch_size, seed=seed, rank=rank,
                           world_size=world_size, start_iter=start_iter,
                           aspect_grouping=aspect_grouping, flip=bool(getattr(dataset, "flip", False)))
    generator = torch.Generator().manual_seed(loader_seed(seed, rank, start_iter))
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                       num_workers=num_workers, generator=generator)


def loader_seed(seed: int, rank: int, start_iter: int) -> int:
    """Seed of the loader's own generator (its workers' base seed), a function of the run's
    seed, the rank and where the stream starts: never of the global RNG."""
    return int(np.random.SeedSequence([seed, rank, start_iter]).generate_state(1, np.uint64)[0])
