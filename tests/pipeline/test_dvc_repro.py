"""`dvc repro` end to end on a fresh checkout, with the smoke profile shortened (8 iterations per
cell, 30 for the R-FCN cells so that one can be interrupted): synthetic data, 12 cells, Figure 3
and both tables with no manual step; push to a local directory remote, a fresh clone, `dvc pull`
and a no-op `dvc repro`; a killed training stage resumes from its checkpoint; a change to the
training code retrains from zero (DVC and `snakemake --forcerun train`) with the old run kept
aside; broken images stop the run at the data-check stage before any training; `dvc exp run -S` reruns one cell; paper mode without data stops at the data-check stage with
klrpn's message, before any other stage, deleting nothing."""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from helpers import REPO, break_three_images
from helpers import shorten_smoke_profile as shorten_profile

from klrpn import identity
from klrpn.config import list_cells

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
CELLS = [c["id"] for c in list_cells(REPO / "params")]
CELL = "voc07-rfcn-resnet101-klrpn"      # interrupted and retrained below
ITERS, RFCN_ITERS = 8, 30
UP_TO_DATE = "Data and pipelines are up to date."


def run(repo: Path, *args: str, check: bool = True, timeout: int = 1800) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=repo, env=env_for(repo), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def env_for(repo: Path) -> dict:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(repo),           # the checkout's klrpn (and code hash), as in CI
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    env.pop("KLRPN_PARAMS", None)
    return env


def fresh_checkout(dst: Path) -> Path:
    """The working tree's tracked and untracked-but-not-ignored files in a new git repository
    (a fresh clone of what is being tested, uncommitted edits included)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    run(dst, "git", "init", "-q")
    return dst


def shorten_smoke_profile(repo: Path) -> None:
    shorten_profile(repo / "params", length=ITERS, steps=[ITERS - 2], warmup_iters=2, checkpoint_every=4)
    path = repo / "params" / "profiles" / "smoke.yaml"
    data = yaml.safe_load(path.read_text())
    data.setdefault("by_detector", {}).setdefault("rfcn", {})["train"] = {
        "schedule": {"length": RFCN_ITERS, "steps": [RFCN_ITERS - 5]}}
    path.write_text(yaml.safe_dump(data))
    vars_file = repo / "workflow" / "config" / "dvc-vars.yaml"   # robust on a shared machine
    vars_file.write_text(re.sub(r"(?m)^threads: .*$", "threads: 1", vars_file.read_text()))


def commit(repo: Path, message: str) -> None:
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", message)


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def final_state(out_dir: Path) -> dict:
    return torch.load(out_dir / "model_final.pt", map_location="cpu", weights_only=True)


def log_iterations(out_dir: Path) -> list[int]:
    with open(out_dir / "train_log.csv") as f:
        return [int(row["iteration"]) for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """(scratch root, first checkout after `dvc repro`, that run's output)."""
    root = tmp_path_factory.mktemp("dvc-e2e")
    (root / "a").mkdir()
    repo = fresh_checkout(root / "a")
    shorten_smoke_profile(repo)
    commit(repo, "fresh checkout, short smoke profile")
    proc = run(repo, "dvc", "repro")
    return root, repo, proc.stdout


def test_fresh_checkout_repro_runs_everything_and_then_is_up_to_date(pipeline):
    root, repo, output = pipeline
    expected = {"data-check", "synth", "figure3", "table1", "table2"} | {
        f"{s}@{c}" for s in ("train", "evaluate") for c in CELLS}
    assert stages_run(output) == expected
    assert output.index("Running stage 'synth'") < output.index("Running stage 'data-check'") \
        < output.index("Running stage 'train@")
    for name in ("table1.md", "table2.md", "figure3.md", "figure3.png"):
        assert (repo / "reports" / name).stat().st_size > 0, name
    assert "smoke" in (repo / "reports" / "table1.md").read_text().lower()
    assert final_state(repo / "results" / CELL)["iteration"] == RFCN_ITERS
    assert final_state(repo / "results" / CELLS[0])["iteration"] == ITERS

    assert run(repo, "dvc", "status").stdout.strip() == UP_TO_DATE    # data.dvc included
    again = run(repo, "dvc", "repro").stdout
    assert UP_TO_DATE in again and not stages_run(again)


def test_broken_data_stops_repro_before_any_training_stage(pipeline):
    """The pre-flight: one image deleted, one truncated, one whose annotation says another size.
    `dvc repro` reruns `synth` (which leaves the data as it is) and stops at `data-check`,
    listing the three files, before any training stage; nothing under results/ changes. With the
    files back, `dvc repro` runs `synth` only and the pipeline is up to date again."""
    _, repo, _ = pipeline
    data = repo / "synthetic"
    kept = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    broken = break_three_images(data)
    before = {p: p.stat().st_mtime_ns for p in (repo / "results").rglob("*")}
    proc = run(repo, "dvc", "repro", check=False)
    assert proc.returncode != 0
    assert stages_run(proc.stdout) == {"synth", "data-check"}, proc.stdout
    assert "failed to reproduce 'data-check'" in proc.stderr
    for path in broken:
        assert f"\n  {path}: " in proc.stderr, path
    assert {p: p.stat().st_mtime_ns for p in (repo / "results").rglob("*")} == before
    for path, content in kept.items():
        path.write_bytes(content)
    again = run(repo, "dvc", "repro").stdout
    assert stages_run(again) == {"synth"}, again
    assert run(repo, "dvc", "status").stdout.strip() == UP_TO_DATE


def test_metrics_plots_and_dag_name_every_cell(pipeline):
    root, repo, _ = pipeline
    shown = run(repo, "dvc", "metrics", "show", "--json").stdout
    metrics = yaml.safe_load(shown)[""]["data"]
    for cell in CELLS:
        m = metrics[f"results/{cell}/metrics.json"]["data"]["metrics"]
        assert ("AP" in m) if cell.startswith("coco") else ("mAP" in m), cell
    html = root / "plots"
    run(repo, "dvc", "plots", "show", "-o", str(html))
    page = (html / "index.html").read_text()
    assert all(f"results/{cell}/train_log.csv" in page for cell in CELLS)
    dag = run(repo, "dvc", "dag", "--dot").stdout
    assert all(f"train@{cell}" in dag and f"evaluate@{cell}" in dag for cell in CELLS)


def test_push_then_fresh_clone_pull_is_up_to_date(pipeline):
    root, repo, _ = pipeline
    run(repo, "dvc", "remote", "add", "-d", "local", str(root / "remote"))
    commit(repo, "dvc.lock and a local remote")
    run(repo, "dvc", "push")
    run(root, "git", "clone", "-q", str(repo), str(root / "b"))
    clone = root / "b"
    run(clone, "dvc", "pull")                  # bare: data.dvc tracks nothing until `dvc add data`
    again = run(clone, "dvc", "repro").stdout
    assert UP_TO_DATE in again and not stages_run(again)
    assert run(clone, "dvc", "status").stdout.strip() == UP_TO_DATE
    for rel in ("reports/table1.md", "reports/table2.md", "reports/figure3.png",
                f"results/{CELL}/model_final.pt", f"results/{CELL}/train_log.csv",
                f"results/{CELL}/metrics.json"):
        assert (clone / rel).read_bytes() == (repo / rel).read_bytes(), rel
    assert sorted(p.name for p in (clone / "results" / CELL / "checkpoints").iterdir()) == \
        sorted(p.name for p in (repo / "results" / CELL / "checkpoints").iterdir())


def edit_without_meaning(root: Path) -> None:
    """A docstring, comment and blank-line edit in every module of ``root/klrpn``: a new first
    comment line, a module docstring reworded (or added), blank lines and a comment at the end."""
    for path in sorted((root / "klrpn").rglob("*.py")):
        text = path.read_text()
        body = text.lstrip()
        if body.startswith('"""'):
            text = body.replace('"""', '"""Edited docstring. ', 1)
        else:
            text = '"""An added module docstring."""\n' + text
        path.write_text("# an edited comment\n" + text + "\n\n# trailing comment\n")


def test_edits_without_meaning_retrain_nothing(pipeline):
    root, _, _ = pipeline
    clone = root / "b"
    out = clone / "results" / CELL
    before = (out / "model_final.pt").read_bytes()
    edit_without_meaning(clone)
    started = time.time()
    direct = run(clone, "klrpn", "train", CELL, "--profile", "smoke", "--out", f"results/{CELL}",
                 "--restart-on-params-change")
    assert "training already complete" in direct.stdout + direct.stderr
    assert time.time() - started < 60
    again = run(clone, "dvc", "repro", f"train@{CELL}").stdout
    assert "training already complete" in again and "resuming" not in again
    assert (out / "model_final.pt").read_bytes() == before
    assert not list(out.glob("stale-*"))


def test_code_change_retrains_from_zero_and_a_killed_repro_resumes(pipeline):
    root, _, _ = pipeline
    clone = root / "b"
    out = clone / "results" / CELL
    old = final_state(out)["provenance"]["run_identity"]
    with open(clone / "klrpn" / "losses.py", "a") as f:
        f.write("\nA_CHANGE_TO_THE_TRAINING_CODE = 1\n")

    proc = subprocess.Popen(["dvc", "repro", f"train@{CELL}"], cwd=clone, env=env_for(clone),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    stale = out / f"stale-{old['id'][:12]}"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:   # the new run's second iteration
        if stale.is_dir() and (out / "train_log.csv").is_file() and len(log_iterations(out)) >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)            # Ctrl-C in the terminal running dvc repro
    killed = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0, killed
    assert f"moved it to {stale.relative_to(clone)}" in killed and "made with other code" in killed
    assert "klrpn/losses.py changed since this run was made" in killed
    assert final_state(stale)["provenance"]["run_identity"] == old   # the old run, kept aside
    assert not (out / "model_final.pt").exists()
    last = max(int(p.stem.split("_")[1]) for p in (out / "checkpoints").glob("iter_*.pt"))
    assert 0 < last < RFCN_ITERS

    resumed = run(clone, "dvc", "repro", f"train@{CELL}").stdout
    assert f"resuming from results/{CELL}/checkpoints/iter_{last:07d}.pt" in resumed
    new = final_state(out)
    assert new["iteration"] == RFCN_ITERS
    assert log_iterations(out) == list(range(1, RFCN_ITERS + 1))
    assert new["provenance"]["run_identity"]["code_hash"] == identity.code_hash(clone) != old["code_hash"]
    assert new["provenance"]["run_identity"]["params_hash"] == old["params_hash"]

    # Snakemake, forced to rerun the training after another code change, also starts afresh
    with open(clone / "klrpn" / "models" / "rpn.py", "a") as f:
        f.write("\nANOTHER_CHANGE = 2\n")
    smk = run(clone, "snakemake", "--profile", "workflow/profiles/smoke", "--forcerun", "train",
              "--", f"results/{CELL}/model_final.pt")
    assert smk.returncode == 0
    log = (clone / "logs" / "train" / f"{CELL}.log").read_text()
    assert "made with other code" in log and "resuming" not in log
    assert "klrpn/models/rpn.py changed since this run was made" in log
    assert len(list(out.glob("stale-*"))) == 2
    assert final_state(out)["provenance"]["run_identity"]["code_hash"] == identity.code_hash(clone)
    assert log_iterations(out) == list(range(1, RFCN_ITERS + 1))


def test_exp_run_with_one_changed_param_reruns_only_that_cell(pipeline):
    _, repo, _ = pipeline
    cell = "voc07-rfcn-resnet101-rpn"
    proc = run(repo, "dvc", "exp", "run", "-S", f"params/cells/{cell}.yaml:+seed=1")
    assert stages_run(proc.stdout) == {f"train@{cell}", f"evaluate@{cell}", "table2"}
    assert final_state(repo / "results" / cell)["cfg"]["seed"] == 1
    assert list((repo / "results" / cell).glob("stale-*"))      # the seed-0 run, kept aside


def paper_variant(dvc_vars: str) -> str:
    """workflow/config/dvc-vars.yaml switched from the smoke variant to the paper one, as
    docs/pipeline.md tells a user to."""
    return (dvc_vars.replace("profile: smoke", "profile: paper")
            .replace("profile_params: params/profiles/smoke.yaml", "profile_params: params/defaults.yaml")
            .replace("data: synthetic", "data: data")
            .replace("data_check_after: synthetic", "data_check_after: workflow/config/dvc-vars.yaml"))


def test_paper_mode_without_data_stops_with_our_message_before_any_stage(pipeline):
    _, repo, _ = pipeline
    vars_file = repo / "workflow" / "config" / "dvc-vars.yaml"
    text = vars_file.read_text()
    vars_file.write_text(paper_variant(text))
    tracked = ("results", "synthetic", "reports")
    before = {p.relative_to(repo): p.stat().st_mtime_ns for d in tracked for p in (repo / d).rglob("*")}
    # --allow-missing ran training stages on a missing input before; --keep-going skips what
    # depends on the failed check (--ignore-errors runs it anyway: docs/pipeline.md)
    for extra in ([], ["--allow-missing"], ["--keep-going"]):
        proc = run(repo, "dvc", "repro", *extra, check=False)
        assert proc.returncode != 0, extra
        assert stages_run(proc.stdout) == {"data-check"}, (extra, proc.stdout)  # and it failed
        assert "klrpn data check: the paper profile reads downloaded data that is not there" \
            in proc.stderr, extra
        assert "klrpn data download coco voc weights --root data" in proc.stderr
        assert "failed to reproduce 'data-check'" in proc.stderr
    after = {p.relative_to(repo): p.stat().st_mtime_ns for d in tracked for p in (repo / d).rglob("*")}
    assert after == before                           # the smoke run's data-check.json included
    vars_file.write_text(text)
    assert run(repo, "dvc", "status").stdout.strip() == UP_TO_DATE
