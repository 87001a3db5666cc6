"""The training loader: deterministic, resumable, rank-disjoint, aspect-grouped."""

from __future__ import annotations

import itertools

import pytest
import torch

from klrpn.config import load_cell
from klrpn.data import build_dataset, build_train_loader
from klrpn.data.sampler import TrainBatches, item_seed

from helpers import PARAMS

SIZES = [(160, 120)] * 7 + [(120, 160)] * 5  # 7 landscape, 5 portrait


def take(batches, n):
    return list(itertools.islice(iter(batches), n))


def test_same_seed_same_stream_and_resume_is_exact():
    a = take(TrainBatches(SIZES, batch_size=2, seed=5, flip=True), 20)
    assert a == take(TrainBatches(SIZES, batch_size=2, seed=5, flip=True), 20)
    assert a != take(TrainBatches(SIZES, batch_size=2, seed=6, flip=True), 20)
    assert take(TrainBatches(SIZES, batch_size=2, seed=5, flip=True, start_iter=13), 7) == a[13:]
    assert {d.flip for batch in a for d in batch} == {True, False}
    assert not any(d.flip for batch in take(TrainBatches(SIZES, batch_size=2, seed=5), 20) for d in batch)


def test_batches_share_one_orientation_and_every_image_is_used():
    batches = take(TrainBatches(SIZES, batch_size=3, seed=0), 40)
    for batch in batches:
        assert len({SIZES[d.index][0] > SIZES[d.index][1] for d in batch}) == 1
    first = [d.index for batch in batches[:3] for d in batch]
    assert len(set(first)) == len(first)  # no repeats before an epoch is used up
    assert {d.index for batch in batches for d in batch} == set(range(len(SIZES)))


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


def test_loader_pins_batches_only_when_asked(synth_root, coco_cfg):
    ds = build_dataset(coco_cfg(synth_root), "train", train=True)
    assert build_train_loader(ds, batch_size=2, seed=0).pin_memory is False
    assert build_train_loader(ds, batch_size=2, seed=0, pin_memory=True).pin_memory is True


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinning needs a CUDA device")
def test_cuda_loader_batches_are_page_locked(synth_root, coco_cfg):
    ds = build_dataset(coco_cfg(synth_root), "train", train=True)
    for images, targets in take(build_train_loader(ds, batch_size=2, seed=0, pin_memory=True,
                                                   num_workers=2), 2):
        assert all(im.is_pinned() for im in images)
        assert all(t["boxes"].is_pinned() and t["labels"].is_pinned() for t in targets)


# --- the multi-scale draw of the VOC07 R-FCN cells --------------------------------------------


def test_voc07_rfcn_cells_draw_one_training_scale_per_batch_from_their_list():
    cfg = load_cell("voc07-rfcn-resnet101-rpn", "paper", PARAMS)
    scales = cfg["input"]["min_size"]
    assert scales == [400, 500, 600, 700, 800] and cfg["input"]["test_min_size"] == 600
    stream = TrainBatches(SIZES, batch_size=2, seed=cfg["seed"], flip=True, min_sizes=scales)
    batches = take(stream, 200)
    # pinned: numpy.random.default_rng([seed, 1, batch number]) picks the index
    assert [b[0].size for b in batches[:12]] == [600, 700, 600, 400, 400, 800, 500, 700, 600, 400, 400, 600]
    assert all(len({d.size for d in b}) == 1 for b in batches)  # one scale per batch
    # each item's own crop / box-cap seed: SeedSequence([seed, 2, batch number, slot])
    assert [d.seed for d in batches[1]] == [item_seed(0, 1, 0), item_seed(0, 1, 1)]
    assert len({d.seed for b in batches for d in b}) == 400
    assert {b[0].size for b in batches} == set(scales)
    # the draw leaves the order / flip stream as it was without one
    plain = take(TrainBatches(SIZES, batch_size=2, seed=cfg["seed"], flip=True), 200)
    assert [[(d.index, d.flip) for d in b] for b in batches] == [[(d.index, d.flip) for d in b] for b in plain]
    # deterministic per seed, different across seeds, replayed exactly on resume
    assert take(TrainBatches(SIZES, batch_size=2, seed=0, flip=True, min_sizes=scales), 200) == batches
    other = take(TrainBatches(SIZES, batch_size=2, seed=1, flip=True, min_sizes=scales), 12)
    assert [b[0].size for b in other] == [600, 500, 800, 800, 800, 400, 700, 600, 500, 800, 600, 600]
    resumed = take(TrainBatches(SIZES, batch_size=2, seed=0, flip=True, min_sizes=scales, start_iter=57), 20)
    assert resumed == batches[57:77]
    # ranks of one global batch share its scale
    r0 = take(TrainBatches(SIZES, batch_size=1, seed=0, rank=0, world_size=2, min_sizes=scales), 30)
    r1 = take(TrainBatches(SIZES, batch_size=1, seed=0, rank=1, world_size=2, min_sizes=scales), 30)
    assert [a[0].size for a in r0] == [b[0].size for b in r1] == [b[0].size for b in batches[:30]]


def test_single_scale_cells_always_get_their_scale():
    cfg = load_cell("voc0712-faster_rcnn-resnet101-rpn", "paper", PARAMS)
    batches = take(TrainBatches(SIZES, batch_size=1, seed=0, min_sizes=cfg["input"]["min_size"]), 50)
    assert {d.size for b in batches for d in b} == {600}


def test_loader_passes_the_drawn_scale_to_the_model_transform(synth_root):
    """The real path of a smoke VOC07 R-FCN cell: the loader's scale reaches
    target["train_size"] and the model resizes each image's short side to it."""
    cfg = load_cell("voc07-rfcn-resnet101-rpn", "smoke", PARAMS)
    cfg["dataset"]["root"] = str(synth_root / "VOCdevkit")
    scales = cfg["input"]["min_size"]
    ds = build_dataset(cfg, "train", train=True)
    assert ds.train_min_sizes == tuple(scales)
    from klrpn.models import build_model

    model = build_model(cfg).train()
    expected = take(TrainBatches(ds.sizes, batch_size=2, seed=0, flip=True, min_sizes=scales), 4)
    for (images, targets), drawn in zip(take(build_train_loader(ds, batch_size=2, seed=0), 4), expected):
        assert [t["train_size"] for t in targets] == [d.size for d in drawn]
        resized, _ = model.transform(images, targets)
        assert [min(size) for size in resized.image_sizes] == [d.size for d in drawn]
