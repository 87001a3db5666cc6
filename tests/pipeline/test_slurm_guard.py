"""workflow/scripts/slurm_guard.py: the start-up check of the SLURM plugin's status command and the
bounded status watch, on canned cluster answers and a stand-in executor with the plugin's
check_active_jobs behaviour (2.x: a failed query drops the jobs, a job missing from the answer is
kept forever). The real cluster path is tests/pipeline/test_slurm.py."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import pytest

from conftest import REPO

spec = importlib.util.spec_from_file_location("slurm_guard", REPO / "workflow" / "scripts" / "slurm_guard.py")
guard = importlib.util.module_from_spec(spec)
sys.modules["slurm_guard"] = guard
spec.loader.exec_module(guard)

NO_ACCOUNTING = "AccountingStorageType   = accounting_storage/none\nMinJobAge               = {age} sec\n"
SACCT_ERROR = "Slurm accounting storage is disabled\n"


def fake_run(min_job_age: int, *, sacct_ok: bool, squeue_ok: bool = True):
    calls = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        if cmd[:3] == ["scontrol", "show", "config"]:
            return subprocess.CompletedProcess(cmd, 0, NO_ACCOUNTING.format(age=min_job_age), "")
        ok = sacct_ok if cmd[0] == "sacct" else squeue_ok
        return subprocess.CompletedProcess(cmd, 0 if ok else 1, "", "" if ok else SACCT_ERROR)

    run.calls = calls
    return run


def which_all(name):
    return f"/usr/bin/{name}"


@pytest.mark.parametrize("value, expected", [("300 sec", 300), ("1h", 3600), ("120", 120), ("", None), ("x", None)])
def test_seconds(value, expected):
    assert guard.seconds(value) == expected


@pytest.mark.parametrize("requested, init, age, sacct, expected", [
    ("squeue", 40, 300, True, "squeue"),
    ("squeue", 40, 119, True, "sacct"),      # the plugin's own fallback: MinJobAge < 3 x 40 s
    ("squeue", 40, None, True, "sacct"),
    ("squeue", 40, 60, False, "squeue"),
    ("sacct", 40, 300, False, "squeue"),
    ("sacct", 40, 300, True, "sacct"),
])
def test_effective_status_command_follows_the_plugin(requested, init, age, sacct, expected):
    assert guard.effective_status_command(requested, init, age, sacct) == expected


def test_squeue_with_a_long_min_job_age_passes():
    run = fake_run(300, sacct_ok=False)
    assert guard.check_status_command("squeue", 40, run=run, which=which_all) == "squeue"
    assert run.calls[-1][0] == "squeue"


def test_sacct_without_accounting_stops_the_run_with_the_reason():
    with pytest.raises(guard.StatusCheckError) as e:
        guard.check_status_command("sacct", 40, run=fake_run(300, sacct_ok=False), which=which_all)
    msg = str(e.value)
    assert "`sacct`" in msg and "Slurm accounting storage is disabled" in msg
    assert "accounting_storage/none" in msg and "slurm-status-command: squeue" in msg


def test_squeue_overridden_by_the_plugin_is_named():
    # MinJobAge 100 < 3 x 40: the plugin would silently use sacct, which fails here
    with pytest.raises(guard.StatusCheckError, match=r"instead of squeue because MinJobAge \(100 s\)"):
        guard.check_status_command("squeue", 40, run=fake_run(100, sacct_ok=False), which=which_all)


def test_squeue_that_may_forget_a_job_between_checks_is_refused():
    # 3 x 50 = 150 <= MinJobAge 150 keeps squeue, but the plugin may wait 180 s between checks
    with pytest.raises(guard.StatusCheckError, match="MinJobAge=150 s"):
        guard.check_status_command("squeue", 50, run=fake_run(150, sacct_ok=True), which=which_all)


def test_failing_squeue_stops_the_run():
    with pytest.raises(guard.StatusCheckError, match="`squeue"):
        guard.check_status_command("squeue", 40, run=fake_run(300, sacct_ok=False, squeue_ok=False),
                                   which=which_all)


def test_timeout_from_the_environment(monkeypatch):
    monkeypatch.setenv("KLRPN_SLURM_STATUS_TIMEOUT", "12.5")
    assert guard.status_timeout() == 12.5
    monkeypatch.setenv("KLRPN_SLURM_STATUS_TIMEOUT", "soon")
    with pytest.raises(guard.StatusCheckError, match="KLRPN_SLURM_STATUS_TIMEOUT='soon'"):
        guard.status_timeout()


# --- the watch, on a stand-in with the plugin's behaviour ---------------------------------------

PLUGIN_SOURCE = '''
async def query_job_status(command, logger):  # replaced by the guard
    raise AssertionError("the guard did not replace query_job_status")


class Executor:
    """What snakemake-executor-plugin-slurm 2.8's check_active_jobs does with an answer."""

    def __init__(self, command):
        self.command, self.logger, self.errors, self.successes = command, Logger(), [], []

    async def check_active_jobs(self, active_jobs):
        status, _ = await query_job_status(self.command, self.logger)
        if status is None:
            return                      # the plugin's bug: the jobs are dropped without a word
        for job in active_jobs:
            state = status.get(job.external_jobid)
            if state is None or state in ("RUNNING", "PENDING"):
                yield job               # missing: "will appear later", kept forever
            elif state == "COMPLETED":
                self.report_job_success(job)
            else:
                self.report_job_error(job, msg=f"failed: {state}")

    def report_job_success(self, job):
        self.successes.append(job.external_jobid)

    def report_job_error(self, job, msg=None):
        self.errors.append((job.external_jobid, msg))


class Logger:
    def __init__(self):
        self.warnings = []

    def warning(self, msg):
        self.warnings.append(msg)

    def debug(self, msg):
        pass
'''


@pytest.fixture
def plugin():
    module = types.ModuleType("fake_slurm_plugin")
    exec(PLUGIN_SOURCE, module.__dict__)
    yield module
    guard.WATCH = None


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def job(jobid):
    return types.SimpleNamespace(external_jobid=jobid)


def check(executor, jobs):
    async def collect():
        return [j.external_jobid async for j in executor.check_active_jobs(jobs)]

    return asyncio.run(collect())


def test_failed_status_query_keeps_the_job_warns_and_gives_up_after_the_timeout(plugin):
    clock = Clock()
    guard.install_watch(100, plugin=plugin, clock=clock)
    ex = plugin.Executor("sh -c 'echo slurm_load_jobs error: Unable to contact slurm controller >&2; exit 1'")
    assert check(ex, [job("7")]) == ["7"]               # the plugin alone would drop it
    assert "Unable to contact slurm controller" in ex.logger.warnings[-1] and not ex.errors
    clock.now = 99
    assert check(ex, [job("7")]) == ["7"]
    clock.now = 100
    assert check(ex, [job("7")]) == []
    [(jobid, msg)] = ex.errors
    assert jobid == "7" and "no status for SLURM job 7 for 100 s" in msg
    assert "Unable to contact slurm controller" in msg and "KLRPN_SLURM_STATUS_TIMEOUT=100" in msg


def test_job_missing_from_the_answer_is_not_waited_for_forever(plugin):
    clock = Clock()
    guard.install_watch(50, plugin=plugin, clock=clock)
    ex = plugin.Executor("printf '8|RUNNING\\n'")
    assert check(ex, [job("8"), job("9")]) == ["8", "9"]
    assert "SLURM does not list job 9" in ex.logger.warnings[-1]
    clock.now = 60
    assert check(ex, [job("8"), job("9")]) == ["8"]
    assert [e[0] for e in ex.errors] == ["9"] and "SLURM does not list job 9" in ex.errors[0][1]


def test_answers_pass_through_and_clear_an_unknown_status(plugin):
    clock = Clock()
    guard.install_watch(50, plugin=plugin, clock=clock)
    failing = plugin.Executor("sh -c 'exit 1'")
    assert check(failing, [job("5")]) == ["5"]
    ok = plugin.Executor("printf '5|RUNNING\\n6|COMPLETED\\n7|FAILED\\n'")
    clock.now = 40
    assert check(ok, [job("5"), job("6"), job("7")]) == ["5"]
    assert ok.successes == ["6"] and [e[0] for e in ok.errors] == ["7"]
    assert guard.WATCH.unknown_since == {}
    clock.now = 200                                      # known again: no timeout for job 5
    assert check(ok, [job("5")]) == ["5"] and [e[0] for e in ok.errors] == ["7"]


def test_install_is_idempotent_and_the_real_plugin_is_supported(plugin):
    guard.install_watch(10, plugin=plugin)
    wrapped = plugin.Executor.check_active_jobs
    guard.install_watch(10, plugin=plugin)
    assert plugin.Executor.check_active_jobs is wrapped
    real = guard.check_plugin()
    assert hasattr(real, "query_job_status") and hasattr(real.Executor, "check_active_jobs")


def test_plugin_versions_the_guard_supports():
    for v in ("1.0.0", "1.9.2", "2.8.0", "2.10.1"):
        guard.check_plugin_version(v)
    for v in ("0.15.1", "3.0.0", "10.1", "dev"):
        with pytest.raises(guard.StatusCheckError, match=f"snakemake-executor-plugin-slurm {v} is not a version"):
            guard.check_plugin_version(v)
