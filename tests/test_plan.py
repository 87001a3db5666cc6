"""`klrpn plan`: the paper profile's 12 cells with the GPU-hours benchmarks/gpu_hours.py prints
(the same estimator), the loop's own iterations, and which runs a results folder already holds."""

import importlib.util
import re
import shutil

import pytest
from helpers import PARAMS, REPO, shortened_smoke_params

from klrpn import checkpoint as ckpt
from klrpn import plan as planning
from klrpn import throughput as tp
from klrpn.cli import main
from klrpn.config import list_cells, load_cell
from klrpn.layout import FINAL_NAME, run_dir
from klrpn.train import iters_per_epoch

# the paper profile's iterations: epochs x int(2 x training images / global batch)
PAPER_ITERATIONS = {
    "coco-faster_rcnn-vgg16": 6 * (2 * 117_266 // 16), "coco-faster_rcnn-resnet101": 6 * (2 * 117_266 // 16),
    "coco-rfcn-resnet101": 6 * (2 * 117_266 // 8), "voc0712-faster_rcnn-vgg16": 6 * 2 * 16_551,
    "voc0712-faster_rcnn-resnet101": 7 * 2 * 16_551, "voc07-rfcn-resnet101": 20 * (2 * 5_011 // 2)}


def gpu_hours_script():
    spec = importlib.util.spec_from_file_location("gpu_hours", REPO / "benchmarks" / "gpu_hours.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def paper_plan(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    return planning.make_plan("paper", results=results, params_dir=PARAMS)


def test_paper_plan_lists_the_12_cells_with_the_loops_iterations(paper_plan):
    rows = paper_plan["cells"]
    assert [r["cell"] for r in rows] == [c["id"] for c in list_cells(PARAMS)] and len(rows) == 12
    for r in rows:
        assert r["iterations"] == PAPER_ITERATIONS[r["cell"].rsplit("-", 1)[0]]
        assert r["images_processed"] == r["iterations"] * r["batch_size"]
        assert r["status"] == "to train" and r["measurement"] is not None
    assert PAPER_ITERATIONS["coco-faster_rcnn-vgg16"] == 6 * iters_per_epoch(117_266, 16, True) == 87_948


def test_paper_total_equals_gpu_hours_script_on_the_committed_measurements(paper_plan, capsys):
    script = gpu_hours_script()
    files = sorted(REPO.glob(tp.BENCHMARK_GLOB))
    table = script.table(tp.read_measurements(files, root=REPO), str(PARAMS))
    assert [r["hours"] for r in table] == [r["gpu_hours"] for r in paper_plan["cells"]]
    assert sum(r["hours"] for r in table) == paper_plan["total"]["gpu_hours"]
    assert script.main(["--results", *map(str, files), "--params", str(PARAMS)]) == 0
    printed = re.search(r"All cells: ([\d.]+) H100-hours", capsys.readouterr().out).group(1)
    text = planning.format_plan(paper_plan)
    assert f"Total: {printed} H100 GPU-hours (Table 1: 65.3, Table 2: 9.6), an estimate." in text
    assert printed == "74.9"


def test_paper_plan_names_each_rows_measurement_and_says_it_estimates(paper_plan):
    text = planning.format_plan(paper_plan)
    assert "12 cells, run folders in" in text and text.count(" | to train | ") == 12
    assert "| coco-faster_rcnn-vgg16-rpn | to train | 117,266 | 6 epochs | 87,948 × 16 | 53.8 [1] | 7.3 | 4 | 1.8 |" in text
    assert ("- [1] 53.75 images/s, measured on coco-faster_rcnn-vgg16-klrpn, NVIDIA H100 80GB HBM3, "
            "2026-11-27 (benchmarks/gpu/2026-11-27/run1_bench_train.jsonl line 5") in text
    assert "estimates, not measurements" in text


def test_paper_plan_disk_is_the_checkpoints_tensors(paper_plan):
    row = next(r for r in paper_plan["cells"] if r["cell"] == "coco-faster_rcnn-resnet101-klrpn")
    cfg = load_cell(row["cell"], "paper", PARAMS)
    from klrpn.models import build_model

    model = build_model(cfg, load_pretrained=False)
    final = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    assert row["final_bytes"] == final
    # Adam: two moments and a step counter per trainable tensor, plus 4 processes' RNG states
    rng = ckpt.payload_bytes(ckpt.capture_rng())
    steps = sum(1 for p in model.parameters() if p.requires_grad) * 4
    assert row["checkpoint_bytes"] == final + 2 * trainable + steps + 4 * rng
    assert row["checkpoints_kept"] == ckpt.KEEP_LAST
    assert row["train_disk_bytes"] == 3 * row["checkpoint_bytes"] + final


def test_gpus_option_sets_gpus_and_wall_hours(paper_plan, tmp_path):
    coco = paper_plan["cells"][0]
    assert (coco["gpus"], coco["wall_hours"]) == (4, coco["gpu_hours"] / 4)   # its train.gpus
    plan = planning.make_plan("paper", results=tmp_path, params_dir=PARAMS, gpus=3)
    gpus = [r["gpus"] for r in plan["cells"]]
    assert gpus == [None] * 6 + [1] * 6     # 3 GPUs: the COCO batches (16, 8) do not split
    assert plan["cells"][6]["wall_hours"] == plan["cells"][6]["gpu_hours"]
    assert "- coco-faster_rcnn-vgg16-rpn: train.batch_size 16 cannot be split over the 3 GPU(s) " \
        "available" in planning.format_plan(plan)


def test_unmeasured_gpu_model_exits_2(tmp_path, capsys):
    assert main(["plan", "--params", str(PARAMS), "--results", str(tmp_path),
                 "--gpu-model", "A100"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("klrpn plan: no bench_train.py measurement of a GPU named like 'A100'")
    assert "measured: NVIDIA H100 80GB HBM3" in err


def test_a_model_without_its_data_is_unknown(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # no data/ here
    cell = "voc07-rfcn-resnet101-rpn"
    ckpt.save_final(run_dir("results", cell), {}, {"params_hash": "x"}, 1)
    row = next(r for r in planning.make_plan("paper", params_dir=PARAMS)["cells"] if r["cell"] == cell)
    assert row["status"] == "unknown" and "VOC image set not found" in row["detail"]


# --- a finished smoke run ---------------------------------------------------------------------

SMOKE_CELL = "voc07-rfcn-resnet101-klrpn"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke cell trained for real (2 iterations, a checkpoint after each) on tiny synthetic
    data; the other cells untrained."""
    from klrpn.data.synthetic import generate

    work = tmp_path_factory.mktemp("smoke")
    generate(work / "synthetic", seed=0, log=lambda *a: None,
             sizes={"coco/train2017": 2, "coco/val2017": 2, "VOC2007/trainval": 4,
                    "VOC2007/test": 3, "VOC2012/trainval": 4})
    shortened_smoke_params(work / "params", length=2, steps=[1], warmup_iters=0,
                           checkpoint_every=1, train={"batch_size": 1})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        assert main(["train", SMOKE_CELL, "--profile", "smoke"]) == 0
    return work


def smoke_plan(work, monkeypatch, results="results"):
    monkeypatch.chdir(work)
    return planning.make_plan("smoke", results=results, params_dir="params")


def test_finished_smoke_cell_is_complete_and_the_others_are_not(smoke_run, monkeypatch, capsys):
    plan = smoke_plan(smoke_run, monkeypatch)
    status = {r["cell"]: r["status"] for r in plan["cells"]}
    assert len(status) == 12 and status.pop(SMOKE_CELL) == "complete"
    assert set(status.values()) == {"to train"}
    row = next(r for r in plan["cells"] if r["cell"] == SMOKE_CELL)
    assert (row["iterations"], row["batch_size"], row["train_images"], row["gpus"],
            row["gpu_hours"], row["gpu_hours_to_train"], row["checkpoints_kept"]) == \
        (2, 1, None, None, None, 0.0, 2)
    assert plan["total"]["complete"] == 1 and plan["total"]["gpu_hours"] is None
    # the disk estimate is the tensors: the real files are a few kB (torch.save's framing) larger
    out = run_dir("results", SMOKE_CELL)
    real = [p.stat().st_size for _, p in ckpt.list_checkpoints(out)]
    assert len(real) == 2 and all(0 < n - row["checkpoint_bytes"] < 0.1 * n for n in real)
    final = (out / FINAL_NAME).stat().st_size
    assert 0 < final - row["final_bytes"] < 0.1 * final
    # the command says the same
    assert main(["plan", "--profile", "smoke"]) == 0
    text = capsys.readouterr().out
    assert f"| {SMOKE_CELL} | complete | — | 2 iterations | 2 × 1 | not measured | not measured | cpu |" in text
    assert text.count(" | to train | ") == 11 and "Still to train: 11 of 12 runs, not measured; 1 complete." in text


def test_checkpoints_only_is_partial_and_another_runs_model_is_stale(smoke_run, monkeypatch):
    monkeypatch.chdir(smoke_run)
    trained = run_dir("results", SMOKE_CELL)
    partial = run_dir("other", SMOKE_CELL)
    shutil.copytree(trained, partial)
    (partial / FINAL_NAME).unlink()
    (partial / "checkpoints" / "iter_0000002.pt").unlink()
    stale = run_dir("other", "voc07-rfcn-resnet101-rpn")   # the KL-RPN cell's run: other params
    shutil.copytree(trained, stale)
    plan = smoke_plan(smoke_run, monkeypatch, "other")
    rows = {r["cell"]: r for r in plan["cells"]}
    assert (rows[SMOKE_CELL]["status"], rows[SMOKE_CELL]["detail"]) == \
        ("partial", f"{partial / 'checkpoints' / 'iter_0000001.pt'}: resumes at iteration 1")
    assert rows["voc07-rfcn-resnet101-rpn"]["status"] == "stale"
    assert "was made with other params" in rows["voc07-rfcn-resnet101-rpn"]["detail"]
    assert sum(r["status"] == "to train" for r in rows.values()) == 10
    text = planning.format_plan(plan)
    assert f"- {SMOKE_CELL}: partial: {partial / 'checkpoints' / 'iter_0000001.pt'}: resumes at " \
        "iteration 1" in text
    assert "- voc07-rfcn-resnet101-rpn: stale: " in text
    assert "Still to train: 12 of 12 runs, not measured; 0 complete." in text
