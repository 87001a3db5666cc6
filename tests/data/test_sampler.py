"""The training loader: deterministic, resumable, rank-disjoint, aspect-grouped."""

from __future__ import annotations

import itertools

from klrpn.data import build_dataset, build_train_loader
from klrpn.data.sampler import TrainBatches

SIZES = [(160, 120)] * 7 + [(120, 160)] * 5  # 7 landscape, 5 portrait


def take(batches, n):
    return list(itertools.islice(iter(batches), n))


def test_same_seed_same_stream_and_resume_is_exact():
    a = take(TrainBatches(SIZES, batch_size=2, seed=5, flip=True), 20)
    assert a == take(TrainBatches(SIZES, batch_size=2, seed=5, flip=True), 20)
    assert a != take(TrainBatches(SIZES, batch_size=2, seed=6, flip=True), 20)
    assert take(TrainBatches(SIZES, batch_size=2, seed=5, flip=True, start_iter=13), 7) == a[13:]
    assert {f for batch in a for _, f in batch} == {True, False}
    assert not any(f for batch in take(TrainBatches(SIZES, batch_size=2, seed=5), 20) for _, f in batch)


def test_batches_share_one_orientation_and_every_image_is_used():
    batches = take(TrainBatches(SIZES, batch_size=3, seed=0), 40)
    for batch in batches:
        assert len({SIZES[i][0] > SIZES[i][1] for i, _ in batch}) == 1
    first = [i for batch in batches[:3] for i, _ in batch]
    assert len(set(first)) == len(first)  # no repeats before an epoch is used up
    assert {i for batch in batches for i, _ in batch} == set(range(len(SIZES)))


def test_ranks_get_disjoint_shares_of_the_global_batch():
    whole = take(TrainBatches(SIZES, batch_size=4, seed=1), 10)
    r0 = take(TrainBatches(SIZES, batch_size=2, seed=1, rank=0, world_size=2), 10)
    r1 = take(TrainBatches(SIZES, batch_size=2, seed=1, rank=1, world_size=2), 10)
    assert [a + b for a, b in zip(r0, r1)] == whole


def test_loader_yields_lists_and_workers_do_not_change_batches(synth_root, coco_cfg):
    ds = build_dataset(coco_cfg(synth_root), "train", train=True)
    main = take(build_train_loader(ds, batch_size=2, seed=0, start_iter=3), 3)
    workers = take(build_train_loader(ds, batch_size=2, seed=0, start_iter=3, num_workers=2), 3)
    for (images, targets), (wimages, wtargets) in zip(main, workers):
        assert isinstance(images, list) and len(images) == 2 and images[0].ndim == 3
        assert [t["image_id"] for t in targets] == [t["image_id"] for t in wtargets]
        assert all((a == b).all() for a, b in zip(images, wimages))
        assert all((a["boxes"] == b["boxes"]).all() for a, b in zip(targets, wtargets))
