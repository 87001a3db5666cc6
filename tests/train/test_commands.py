"""The thin entry points: parsed arguments reach train_cell / evaluate_cell; user errors are
one line on stderr and exit status 1."""

from klrpn import cli


def test_train_unknown_cell_is_a_clear_error(capsys):
    assert cli.main(["train", "coco-nothing-vgg16-rpn", "--profile", "smoke", "--out", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("klrpn train:") and "unknown cell 'coco-nothing-vgg16-rpn'" in err


def test_evaluate_without_training_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "cell"
    assert cli.main(["evaluate", "coco-faster_rcnn-vgg16-rpn", "--profile", "smoke",
                     "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "model_final.pt not found" in err and not (out / "metrics.json").exists()


def test_parsers_carry_the_options():
    args = cli.build_parser().parse_args(["train", "voc07-rfcn-resnet101-klrpn", "--profile",
                                          "smoke", "--out", "o", "--device", "cpu", "--amp", "off"])
    assert (args.cell, args.profile, args.out, args.device, args.amp) == \
        ("voc07-rfcn-resnet101-klrpn", "smoke", "o", "cpu", "off")
    assert callable(args.func)


def test_set_is_repeatable_on_train_and_evaluate():
    for command in ("train", "evaluate"):
        args = cli.build_parser().parse_args([command, "voc07-rfcn-resnet101-klrpn", "--set",
                                              "train.lr=0.002", "--set", "input.flip=false"])
        assert args.set == ["train.lr=0.002", "input.flip=false"]
        assert cli.build_parser().parse_args([command, "voc07-rfcn-resnet101-klrpn"]).set == []


def test_a_bad_set_fails_at_once_naming_the_key(tmp_path, monkeypatch, capsys):
    """No data, no model: the override is checked before anything else is read or written."""
    from helpers import PARAMS

    monkeypatch.chdir(tmp_path)
    for command in ("train", "evaluate"):
        assert cli.main([command, "voc07-rfcn-resnet101-klrpn", "--profile", "smoke", "--params",
                         str(PARAMS), "--set", "train.lrr=1"]) == 1
        err = capsys.readouterr().err
        assert err == (f"klrpn {command}: --set train.lrr=1: unknown key 'train.lrr' "
                       "(did you mean 'train.lr'?)\n")
        assert cli.main([command, "voc07-rfcn-resnet101-klrpn", "--profile", "smoke", "--params",
                         str(PARAMS), "--set", "train.lr=fast"]) == 1
        assert capsys.readouterr().err == (f"klrpn {command}: --set train.lr=fast: key 'train.lr': "
                                           "expected number, got str 'fast'\n")
    assert list(tmp_path.iterdir()) == []
