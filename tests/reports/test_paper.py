"""klrpn.paper: the paper's reference tables and their RPN / KL-RPN pairs."""

from __future__ import annotations

import shutil

import pytest

from klrpn.paper import ReportError, load_reference, selected_pairs, table_cells, table_pairs
from report_runs import REPO, cells_of_table


def test_reference_covers_exactly_the_cells_and_records_the_ap75_ambiguity():
    ref = load_reference()
    for t in (1, 2):
        assert sorted(r["cell"] for r in ref[f"table{t}"]["rows"]) == sorted(cells_of_table(t))
    rfcn = [r for r in ref["table1"]["rows"] if r["method"] == "R-FCN"]
    assert all(r["values"]["AP75"] is None and r["ambiguous"] == ["AP75"] for r in rfcn)
    assert ref["table1"]["ambiguities"]["AP75_unattributed_value"] == 33.4
    vgg_kl = next(r for r in ref["table1"]["rows"] if r["cell"] == "coco-faster_rcnn-vgg16-klrpn")
    assert vgg_kl["values"] == {"AP": 29.7, "AP50": 49.9, "AP75": 31.5, "APS": 11.6, "APM": 33.0,
                                "APL": 42.4, "params_M": 138.32, "speed_ms": 187}
    assert [r["values"]["mAP"] for r in ref["table2"]["rows"]] == [75.9, 77.1, 80.2, 80.7, 73.8, 74.6]


def test_pairs_and_their_paper_delta():
    pairs = table_pairs(2)
    assert [p["rpn"] for p in pairs] == [c for c in cells_of_table(2) if c.endswith("-rpn")]
    rfcn = next(p for p in pairs if p["rpn"] == "voc07-rfcn-resnet101-rpn")
    assert rfcn["klrpn"] == "voc07-rfcn-resnet101-klrpn" and rfcn["paper_delta"] == 0.8
    assert rfcn["metric"] == "mAP" and table_pairs(1)[0]["metric"] == "AP"
    assert len(selected_pairs()) == 6
    assert [p["rpn"] for p in selected_pairs(["voc07-rfcn-resnet101-rpn"])] == ["voc07-rfcn-resnet101-rpn"]
    with pytest.raises(ReportError, match="voc07-rfcn-resnet101-klrpn is not the RPN cell"):
        selected_pairs(["voc07-rfcn-resnet101-klrpn"])


def test_table_cells_must_match_the_cell_list(tmp_path):
    shutil.copytree(REPO / "params", tmp_path / "params")
    cells_file = tmp_path / "params" / "cells.yaml"
    assert table_cells(1, cells_file=cells_file) == [r["cell"] for r in load_reference()["table1"]["rows"]]
    text = cells_file.read_text()
    cells_file.write_text("\n".join(l for l in text.splitlines() if "coco-rfcn-resnet101-klrpn" not in l) + "\n")
    with pytest.raises(ReportError, match=r"table1 rows .* do not match the table-1 cells of .*cells.yaml"):
        table_cells(1, cells_file=cells_file)
