"""A run made with other params is moved aside, not resumed, when the pipeline asks for it."""

import pytest

from klrpn import checkpoint as ckpt
from klrpn.train import archive_stale_run


def _write_run(out_dir, params_hash, *, final):
    ckpt.atomic_save({"params_hash": params_hash, "iteration": 5}, ckpt.checkpoint_path(out_dir, 5))
    (out_dir / "train_log.csv").write_text("iteration\n5\n")
    if final:
        ckpt.save_final(out_dir, {}, {"params_hash": params_hash}, 5)


@pytest.mark.parametrize("final", [True, False])
def test_stale_run_is_archived(tmp_path, final):
    _write_run(tmp_path, "a" * 64, final=final)
    archive = archive_stale_run(tmp_path, "b" * 64, log=lambda *a: None)
    assert archive == tmp_path / ("stale-" + "a" * 12)
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]
    assert (archive / "train_log.csv").is_file()
    assert ckpt.find_latest(archive) is not None
    assert ckpt.find_latest(tmp_path) is None


def test_same_params_and_empty_folder_are_left_alone(tmp_path):
    assert archive_stale_run(tmp_path, "a" * 64) is None
    _write_run(tmp_path, "a" * 64, final=True)
    assert archive_stale_run(tmp_path, "a" * 64) is None
    assert (tmp_path / ckpt.FINAL_NAME).is_file()
