"""The measured throughput behind GPU-hour estimates: the packaged table is the committed
bench_train.py results, and measurements are read, selected and matched as documented."""

import json

import pytest
from helpers import PARAMS, REPO

from klrpn import throughput as tp
from klrpn.config import load_cell


def committed_files():
    return sorted(REPO.glob(tp.BENCHMARK_GLOB))


def test_packaged_table_equals_the_committed_benchmark_files():
    files = committed_files()
    assert files, f"no {tp.BENCHMARK_GLOB} in the checkout"
    assert tp.reference_measurements() == tp.read_measurements(files, root=REPO)
    # and the file is exactly what `python benchmarks/gpu_hours.py --write-reference` writes
    text = (REPO / "klrpn" / tp.REFERENCE).read_text()
    assert text == tp.reference_document(tp.read_measurements(files, root=REPO))


def test_measurements_record_file_line_and_date():
    rows = tp.reference_measurements()
    first = rows[0]
    assert (first["source"], first["line"], first["date"]) == \
        ("benchmarks/gpu/2026-11-27/run1_bench_train.jsonl", 1, "2026-11-27")
    assert all("images_per_s" in r and r["device"] == "NVIDIA H100 80GB HBM3" for r in rows)
    assert len(rows) == 13   # 8 + 5 JSON lines with images/s; the --compare summaries are skipped


def test_the_cells_measurement_is_the_documented_one():
    measurements = tp.reference_measurements()
    cfg_of = tp.config_loader(PARAMS)
    best = tp.best_for(load_cell("voc0712-faster_rcnn-vgg16-rpn", "paper", PARAMS), measurements, cfg_of)
    assert (best["cell"], best["label"], best["images_per_s"]) == \
        ("coco-faster_rcnn-vgg16-klrpn", "after", 53.75)
    assert tp.describe(best) == "coco-faster_rcnn-vgg16-klrpn, NVIDIA H100 80GB HBM3, 2026-11-27"
    # the smoke profile's settings were never measured
    assert tp.best_for(load_cell("voc0712-faster_rcnn-vgg16-rpn", "smoke", PARAMS),
                       measurements, cfg_of) is None


def test_gpu_model_selects_and_an_unmeasured_one_is_a_clear_error(tmp_path):
    rows, source = tp.measurements_for("h100")
    assert len(rows) == 13 and source.startswith("klrpn/reference/throughput.yaml")
    with pytest.raises(tp.ThroughputError, match=r"no bench_train.py measurement of a GPU named "
                                                 r"like 'A100' .*measured: NVIDIA H100 80GB HBM3"):
        tp.measurements_for("A100")
    other = tmp_path / "2027-01-02" / "a100_bench_train.jsonl"
    other.parent.mkdir()
    row = {**rows[0], "device": "NVIDIA A100-SXM4-80GB"}
    for key in ("source", "line", "date"):
        row.pop(key)
    other.write_text("some log text\n" + json.dumps(row) + "\n")
    (got,), source = tp.measurements_for("A100", [other])
    assert (got["device"], got["line"], got["date"], got["source"]) == \
        ("NVIDIA A100-SXM4-80GB", 2, "2027-01-02", str(other))


@pytest.mark.parametrize("text, message", [
    (None, r"cannot read bench_train.py results"),
    ('{"cell": "x", "images_per_s": 1\n', r":1: not a JSON line"),
    ('{"cell": "x", "profile": "paper", "images_per_s": 1}\n', r":1: .* without key 'device'"),
    ('{"compare": "after / before"}\n', r"no bench_train.py measurement in it"),
])
def test_unusable_files_are_named(tmp_path, text, message):
    path = tmp_path / "bench.jsonl"
    if text is not None:
        path.write_text(text)
    with pytest.raises(tp.ThroughputError, match=str(path).replace(".", r"\.") + ".*" + message):
        tp.read_measurements([path])
