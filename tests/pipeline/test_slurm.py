"""The smoke run on a real SLURM cluster (scripts/slurm-local.sh: Debian's SLURM on localhost, no
accounting, 2 fake GPUs), through `workflow/profiles/slurm` with the site values from the
environment as docs/pipeline.md says, for one RPN and one KL-RPN cell to a rendered Table 2.

One run, interrupted three times on purpose:

1. while both training jobs are RUNNING and have checkpointed, Ctrl-C (SIGINT) to `snakemake`: it
   cancels its jobs (scancel), `klrpn train` checkpoints on SIGTERM and stops;
2. `snakemake` is started again: both trainings resume ("resuming from"), none starts from zero;
3. while the KL-RPN training job is RUNNING, `scontrol requeue` it: it checkpoints on SIGTERM,
   SLURM runs it again, it resumes; Snakemake (polling with squeue) carries on;
4. SIGTERM to `snakemake`: it submits nothing more and waits for the running trainings to finish;
5. started a third time, it trains nothing again, evaluates, exit 0; `klrpn report` renders Table 2;
6. every job ran as a SLURM job with the partition, time limit, memory, CPUs and account of the
   profile and config, the training jobs with `--gpus=fake:1` and CUDA_VISIBLE_DEVICES;
7. each `model_final.pt` is bitwise equal to an uninterrupted `klrpn train` of the same cell.

Needs root (installs and starts SLURM); CI (.ci/run) runs as root on a fresh Debian machine.
Schedules are shortened in a copy of params/ (300 iterations, a checkpoint every 50).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import BIN, SNAKEMAKE, _copy_workflow
from helpers import REPO, shorten_smoke_profile

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

SCRIPT = REPO / "scripts" / "slurm-local.sh"
STATE = Path(os.environ.get("KLRPN_SLURM_STATE", "/var/tmp/klrpn-slurm"))
CELLS = {"rpn": "voc07-rfcn-resnet101-rpn", "klrpn": "voc07-rfcn-resnet101-klrpn"}
# Ctrl-C, the restart and the requeue each wait for a checkpoint (the KL-RPN run reaches about
# iteration 150 by the requeue), so 300 leave it mid-training whatever the machine's speed
ITERS, CKPT_EVERY = 300, 50
SITE = {  # docs/pipeline.md, "SLURM": the profile's site values
    "KLRPN_SLURM_ACCOUNT": "klrpn-ci",
    "KLRPN_SLURM_PARTITION": "cpu",
    "KLRPN_SLURM_GPU_PARTITION": "gpu",
    "KLRPN_SLURM_GPU_MODEL": "fake",
}
# the plugin's first status check after 5 s instead of 40 (the cluster's MinJobAge is 300 s)
SNAKEMAKE_ARGS = ["--profile", "workflow/profiles/slurm", "--config", "profile=smoke",
                  "--slurm-init-seconds-before-status-checks", "5", "--",
                  *(f"results/{cell}/metrics.json" for cell in CELLS.values())]


def _cluster_up() -> bool:
    out = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True).stdout
    return "slurmctld: running" in out and "slurmd: running" in out


@pytest.fixture(scope="module")
def cluster():
    """scripts/slurm-local.sh up (and down afterwards if this test brought it up): the env for
    SLURM clients and the profile."""
    if os.geteuid() != 0:
        pytest.skip("needs root: scripts/slurm-local.sh installs Debian's SLURM packages and starts its daemons")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and there is no apt-get to install it (Debian/Ubuntu only)")
    etc = Path("/etc/slurm/slurm.conf")
    if (etc.exists() or etc.is_symlink()) and os.path.realpath(etc) != str((STATE / "slurm.conf").resolve()):
        pytest.skip(f"{etc} belongs to another SLURM cluster; the local test cluster needs that path")
    was_up = _cluster_up()
    proc = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"slurm-local.sh up failed:\n{proc.stdout}\n{proc.stderr}"
    env = {**os.environ, **SITE, "SLURM_CONF": str(STATE / "slurm.conf"),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("KLRPN_PARAMS", None)
    yield env
    if not was_up:
        subprocess.run(["bash", str(SCRIPT), "down"], capture_output=True, text=True, timeout=120)


@pytest.fixture
def workdir(tmp_path) -> Path:
    """The workflow with its params and a 300-iteration schedule; the profile's train jobs also ask for a
    GPU (`gpu: 1`, added to set-resources) so that one rule takes the GPU path on the fake GRES,
    while the smoke params still train on the CPU."""
    wd = _copy_workflow(tmp_path)
    shorten_smoke_profile(wd / "params", length=ITERS, steps=[ITERS * 4 // 5],
                          checkpoint_every=CKPT_EVERY)
    slurm = wd / "workflow" / "profiles" / "slurm" / "config.yaml"
    prof = yaml.safe_load(slurm.read_text())
    prof["set-resources"]["train"]["gpu"] = 1
    slurm.write_text(yaml.safe_dump(prof))
    return wd


# --- helpers ------------------------------------------------------------------------------------


def start_snakemake(wd: Path, env: dict, name: str) -> tuple[subprocess.Popen, Path]:
    log = wd / f"{name}.out"
    proc = subprocess.Popen([SNAKEMAKE, *SNAKEMAKE_ARGS], cwd=wd, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=default_sigint)
    return proc, log


def default_sigint() -> None:
    """SIGINT as at a terminal: a test run started as a background job (``cmd &``) inherits it
    ignored, and Python then never installs its Ctrl-C handler, so the Ctrl-C step would be lost."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(what: str, predicate, timeout: float, *, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"snakemake exited ({proc.returncode}) while waiting for {what}:\n"
                                 f"{log.read_text()[-5000:] if log else ''}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n"
                         f"{log.read_text()[-5000:] if log else ''}")


def scontrol_jobs(env: dict) -> dict[str, dict[str, str]]:
    """Every job slurmctld still knows (MinJobAge 300 s): {job id: {key: value}}."""
    out = subprocess.run(["scontrol", "show", "job", "-o"], env=env, capture_output=True, text=True,
                         check=True).stdout
    jobs = {}
    for line in out.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobId" in fields:
            jobs[fields["JobId"]] = fields
    return jobs


def train_comment(cell: str, seeddir: str = "") -> str:
    """The SLURM comment the plugin gives a train job: ``rule_<rule>_wildcards_`` and the
    wildcard values joined by ``_`` (snakemake_executor_plugin_slurm.utils.get_job_wildcards),
    here (seeddir, cell); seed 0's seeddir is empty."""
    return f"rule_train_wildcards_{seeddir.replace('/', '_')}_{cell}"


def train_job(env: dict, cell: str, state: str = "RUNNING") -> dict | None:
    for job in scontrol_jobs(env).values():
        if job.get("Comment") == train_comment(cell) and job["JobState"] == state:
            return job
    return None


def train_process(wd: Path, cell: str) -> dict | None:
    """The running `python -m klrpn.cli train <cell>` of this work dir: pid and environment."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"klrpn.cli" not in cmd or b"train" not in cmd or cell.encode() not in cmd:
                continue
            if os.path.realpath(f"/proc/{pid}/cwd") != str(wd.resolve()):
                continue
            environ = dict(kv.split(b"=", 1) for kv in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in kv)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        return {"pid": int(pid), "env": {k.decode(): v.decode() for k, v in environ.items()}}
    return None


def checkpoints(wd: Path, cell: str) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (wd / "results" / cell / "checkpoints").glob("iter_*.pt"))


def train_log(wd: Path, cell: str) -> str:
    path = wd / "logs" / "train" / f"{cell}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def stopped_at(text: str) -> int | None:
    m = re.search(r"stopped by signal at iteration (\d+)", text)
    return int(m.group(1)) if m else None


def resumed_at(text: str) -> int | None:
    m = re.search(r"resuming from \S+ \(iteration (\d+)\)", text)
    return int(m.group(1)) if m else None


def weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


# --- the test -----------------------------------------------------------------------------------


def test_smoke_run_on_slurm_survives_snakemake_restarts_and_requeue(cluster, workdir):
    env, wd = cluster, workdir
    started = time.monotonic()
    jobs: dict[str, dict] = {}   # snapshots of slurmctld's job table (it forgets after MinJobAge)

    # 1. Ctrl-C (SIGINT) to the whole snakemake while both trainings run past a checkpoint: it
    #    cancels its SLURM jobs (scancel: SIGTERM), klrpn train checkpoints and stops (exit 143)
    proc, log = start_snakemake(wd, env, "run1")
    for cell in CELLS.values():
        wait_for(f"{cell} training past its first checkpoint", lambda c=cell: checkpoints(wd, c)
                 and train_job(env, c), 600, proc=proc, log=log)
    gpu_envs = {cell: wait_for(f"the {cell} training process", lambda c=cell: train_process(wd, c), 60)["env"]
                for cell in CELLS.values()}
    jobs.update(scontrol_jobs(env))
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) != 0
    stops = {cell: wait_for(f"{cell} checkpointing on SIGTERM", lambda c=cell: stopped_at(train_log(wd, c)), 60)
             for cell in CELLS.values()}
    for cell, it in stops.items():
        assert 0 < it < ITERS and it in checkpoints(wd, cell), (cell, it, checkpoints(wd, cell))
    # each training ran inside its SLURM job, on its own fake GPU
    assert all(e.get("SLURM_JOB_ID") for e in gpu_envs.values()), gpu_envs
    assert sorted(e.get("CUDA_VISIBLE_DEVICES") for e in gpu_envs.values()) == ["0", "1"], gpu_envs

    # 2. start it again: both trainings resume where they stopped
    proc, log = start_snakemake(wd, env, "run2")
    klrpn, rpn = CELLS["klrpn"], CELLS["rpn"]
    job = wait_for("the KL-RPN training to resume and pass a checkpoint",
                   lambda: resumed_at(train_log(wd, klrpn)) is not None
                   and max(checkpoints(wd, klrpn)) > stops[klrpn] and train_job(env, klrpn), 600,
                   proc=proc, log=log)
    assert resumed_at(train_log(wd, klrpn)) == stops[klrpn]

    # 3. pre-emption: `scontrol requeue` the running KL-RPN training job
    subprocess.run(["scontrol", "requeue", job["JobId"]], env=env, check=True)
    requeue_stop = wait_for("the requeued job checkpointing on SIGTERM",
                            lambda: stopped_at(train_log(wd, klrpn)), 60, proc=proc, log=log)
    wait_for("the requeued job to run again and resume",
             lambda: resumed_at(train_log(wd, klrpn)) == requeue_stop, 300, proc=proc, log=log)
    assert scontrol_jobs(env)[job["JobId"]]["Restarts"] == "1"
    assert resumed_at(train_log(wd, rpn)) == stops[rpn]

    # 4. SIGTERM to snakemake: it submits nothing more, waits for its running jobs, exits
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=600)
    jobs.update(scontrol_jobs(env))
    assert "Will exit after finishing currently running jobs" in log.read_text()
    for cell in CELLS.values():
        assert (wd / "results" / cell / "model_final.pt").exists(), log.read_text()[-5000:]
    trained = {cell: train_log(wd, cell) for cell in CELLS.values()}

    # 5. start it again: nothing is trained again; evaluation, exit 0; then the table (as in
    #    test_smoke_run.py: the report rule needs all six Table-2 cells)
    proc, log = start_snakemake(wd, env, "run3")
    assert proc.wait(timeout=900) == 0, log.read_text()[-5000:]
    jobs.update(scontrol_jobs(env))
    assert "rule train:" not in log.read_text()
    assert {cell: train_log(wd, cell) for cell in CELLS.values()} == trained
    subprocess.run([str(BIN / "klrpn"), "report", "table2", "--results", "results", "--profile", "smoke",
                    "--out", "reports/table2.md"], cwd=wd, check=True, env=env, capture_output=True)
    table = (wd / "reports" / "table2.md").read_text()
    assert "SMOKE RUN" in table
    rows = [line for line in table.splitlines() if line.startswith("| R-FCN")]
    assert len(rows) == 2 and all("—" not in row.split("|")[5] for row in rows)

    # 6. every job was a SLURM job with the profile's and config's resources
    cfg = yaml.safe_load((wd / "workflow" / "config" / "config.yaml").read_text())["smoke_resources"]
    expected = {  # rule: (partition, minutes, MB, CPUs, TRES asked per job)
        "synth": ("cpu", cfg["synth"]["runtime"], cfg["synth"]["mem_mb"], 1, None),
        "train": ("gpu", cfg["train"]["runtime"]["voc07"], cfg["train"]["mem_mb"]["voc07"], 1, "gres:gpu:fake:1"),
        "evaluate": ("gpu", cfg["evaluate"]["runtime"]["voc07"], cfg["evaluate"]["mem_mb"]["voc07"], 1,
                     "gres:gpu:fake:0"),
    }
    outputs = "".join((wd / f"run{i}.out").read_text() for i in (1, 2, 3))
    states: dict[str, list[str]] = {}
    for jobid in re.findall(r"has been submitted with SLURM jobid (\d+)", outputs):
        job = jobs[jobid]
        rule = re.match(r"rule_(\w+?)(_wildcards_|$)", job["Comment"]).group(1)
        partition, minutes, mb, cpus, tres = expected[rule]
        assert (job["Partition"], job["TimeLimit"], job["MinMemoryNode"], job["NumCPUs"], job["Account"]) == \
            (partition, f"00:{minutes:02d}:00", f"{mb}M", str(cpus), SITE["KLRPN_SLURM_ACCOUNT"]), (rule, job)
        assert job.get("TresPerJob", "") == (tres or ""), (rule, job)
        states.setdefault(rule, []).append(job["JobState"])
    assert states == {"synth": ["COMPLETED"], "train": ["CANCELLED"] * 2 + ["COMPLETED"] * 2,
                      "evaluate": ["COMPLETED"] * 2}, states

    # 7. bitwise equal to uninterrupted runs of the same cells (same params, one thread each)
    refs = {cell: subprocess.Popen([str(BIN / "python"), "-m", "klrpn.cli", "train", cell, "--profile", "smoke",
                                    "--out", f"reference/{cell}"], cwd=wd, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True,
                                   env={**env, "KLRPN_PARAMS": "params", "OMP_NUM_THREADS": "1"})
            for cell in CELLS.values()}
    for cell, ref in refs.items():
        assert ref.wait(timeout=600) == 0, ref.stderr.read()
    for cell in CELLS.values():
        got, want = weights(wd / "results" / cell / "model_final.pt"), weights(wd / "reference" / cell / "model_final.pt")
        differ = [k for k in want if not torch.equal(got[k], want[k])]
        assert got.keys() == want.keys() and not differ, f"{cell}: {len(differ)} of {len(want)} tensors differ: {differ[:5]}"
    print(f"SLURM smoke run with two restarts and a requeue: {time.monotonic() - started:.0f} s")


def test_lost_controller_ends_the_run_with_a_message_instead_of_a_hang(cluster, tmp_path):
    """slurmctld dies after a job was submitted: every status query fails. The plugin alone would
    drop the job and wait forever in silence; the profile's status watch names the job and the
    error at each check and ends the run after KLRPN_SLURM_STATUS_TIMEOUT seconds."""
    wd = _copy_workflow(tmp_path)
    env = {**cluster, "KLRPN_SLURM_STATUS_TIMEOUT": "20"}
    log = wd / "run.out"
    started = time.monotonic()
    proc = subprocess.Popen([SNAKEMAKE, "--profile", "workflow/profiles/slurm", "--config", "profile=smoke",
                             "--slurm-init-seconds-before-status-checks", "5", "--", "synthetic"],
                            cwd=wd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        jobid = wait_for("the synth job's submission",
                         lambda: re.findall(r"submitted with SLURM jobid (\d+)", log.read_text()), 120,
                         proc=proc, log=log)[0]
        os.kill(int((STATE / "slurmctld.pid").read_text()), signal.SIGTERM)
        assert proc.wait(timeout=180) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
        up = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
    output = log.read_text()
    assert f"status of SLURM job {jobid} unknown" in output, output[-3000:]
    assert f"no status for SLURM job {jobid} for" in output and "KLRPN_SLURM_STATUS_TIMEOUT=20" in output
    # the query's own error is passed on (without slurmctld the plugin cannot read MinJobAge and
    # falls back to sacct: "Slurm accounting storage is disabled")
    assert re.search(r"the status query failed: `(squeue|sacct) .*`: exit \d+: \S", output), output[-3000:]
    print(f"lost controller: run ended after {time.monotonic() - started:.0f} s")
