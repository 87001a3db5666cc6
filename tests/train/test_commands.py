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
