"""A run made with other params, data or training code is moved aside (or refused), never
resumed; a run of the same identity is left alone."""

import pytest

from klrpn import checkpoint as ckpt
from klrpn.identity import combine
from klrpn.runs import already_trained, archive_stale_run, check_same_run

OLD = combine("a" * 64, "d" * 64, "c" * 64)


def _write_run(out_dir, identity, *, final):
    ckpt.atomic_save({"params_hash": identity["params_hash"], "run_identity": identity,
                      "iteration": 5}, ckpt.checkpoint_path(out_dir, 5))
    (out_dir / "train_log.csv").write_text("iteration\n5\n")
    if final:
        ckpt.save_final(out_dir, {}, {"params_hash": identity["params_hash"],
                                      "run_identity": identity}, 5)


@pytest.mark.parametrize("final", [True, False])
@pytest.mark.parametrize("changed, new", [
    ("params", combine("b" * 64, "d" * 64, "c" * 64)),
    ("data", combine("a" * 64, "e" * 64, "c" * 64)),
    ("code", combine("a" * 64, "d" * 64, "f" * 64)),
])
def test_stale_run_is_archived(tmp_path, final, changed, new):
    _write_run(tmp_path, OLD, final=final)
    messages = []
    archive = archive_stale_run(tmp_path, new, log=messages.append)
    assert archive == tmp_path / ("stale-" + OLD["id"][:12])
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]
    assert (archive / "train_log.csv").is_file()
    assert ckpt.find_latest(archive) is not None
    assert ckpt.find_latest(tmp_path) is None
    assert f"made with other {changed} " in messages[0] and "iteration 0" in messages[0]


def test_check_same_run_refuses_another_runs_checkpoint(tmp_path):
    _write_run(tmp_path, OLD, final=False)
    check_same_run(tmp_path, OLD)
    with pytest.raises(ckpt.CheckpointError, match=r"iter_0000005.pt was made with other code .*"
                                                   r"--restart-on-params-change"):
        check_same_run(tmp_path, combine("a" * 64, "d" * 64, "f" * 64))
    assert ckpt.find_latest(tmp_path) is not None  # nothing moved or deleted


def test_already_trained_only_for_the_same_run(tmp_path):
    _write_run(tmp_path, OLD, final=True)
    assert already_trained(tmp_path, {"run_identity": OLD}, log=lambda *a: None)
    with pytest.raises(ckpt.CheckpointError, match="made with other data, code"):
        already_trained(tmp_path, {"run_identity": combine("a" * 64, "e" * 64, "f" * 64)})


def test_checkpoint_from_before_run_identities_is_stale(tmp_path):
    ckpt.atomic_save({"params_hash": "a" * 64, "iteration": 5}, ckpt.checkpoint_path(tmp_path, 5))
    archive = archive_stale_run(tmp_path, OLD, log=lambda *a: None)
    assert archive == tmp_path / ("stale-" + "a" * 12)


def test_same_run_and_empty_folder_are_left_alone(tmp_path):
    assert archive_stale_run(tmp_path, OLD) is None
    _write_run(tmp_path, OLD, final=True)
    assert archive_stale_run(tmp_path, OLD) is None
    assert (tmp_path / ckpt.FINAL_NAME).is_file()
