"""No silent hang on SLURM: a start-up check of the job-status command and a bounded status watch.

snakemake-executor-plugin-slurm (2.x) learns that a job finished only from its status command
(`sacct`, or `squeue` when the cluster keeps finished jobs long enough). Two ways it waits forever
without a word (docs/pipeline.md, "SLURM"):

* the status query fails (`sacct` on a cluster without accounting: "Slurm accounting storage is
  disabled"; slurmctld unreachable): the plugin logs it at debug level and drops the active jobs
  from its watch list, so Snakemake never hears of them again;
* the job is missing from the answer (it left squeue's memory, MinJobAge, before a check saw it
  finish; or slurmdbd never recorded it): the plugin keeps waiting for it to appear.

`on_start(workflow)` (the Snakefile's `onstart`, main Snakemake process with the slurm executor
only) does two things:

1. **check**: works out which status command the plugin will really use (it overrides
   `slurm-status-command: squeue` with `sacct` when MinJobAge < 3 x the first status-check delay)
   and runs it once; if it fails, or squeue cannot be trusted to still list a finished job at the
   next check, the run stops before any job is submitted, with the command's error and what to set;
2. **watch**: replaces the plugin's status query with one that keeps the command's error text, and
   wraps its status check so that a job whose status is unknown (query failed, or the job missing
   from the answer) stays watched, is named in a warning at every check, and after
   `KLRPN_SLURM_STATUS_TIMEOUT` seconds (default 600) is reported as failed with that error,
   so Snakemake ends the run with a message instead of waiting.

Only the plugin's documented executor interface (check_active_jobs, report_job_success,
report_job_error) and its status-query helpers are touched; `check_plugin()` refuses an
unsupported plugin version loudly rather than guessing.
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from io import StringIO

# The plugin waits at most this long between two status checks (its `max_sleep_time`).
PLUGIN_MAX_CHECK_INTERVAL_S = 180
SUPPORTED_PLUGIN_MAJOR = (1, 2)
DEFAULT_TIMEOUT_S = 600
QUERY_TIMEOUT_S = 60


class StatusCheckError(Exception):
    """The cluster cannot answer the plugin's job-status queries (message says why and what to set)."""


# --- 1. start-up check --------------------------------------------------------------------------


def scontrol_config(run=subprocess.run) -> dict[str, str]:
    """`scontrol show config` as {key: value}; StatusCheckError if scontrol fails."""
    try:
        proc = run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise StatusCheckError(f"`scontrol show config` did not run: {e}") from e
    if proc.returncode != 0:
        raise StatusCheckError(f"`scontrol show config` failed ({proc.returncode}): {proc.stderr.strip()}")
    conf = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            conf[key.strip()] = value.strip()
    return conf


def seconds(value: str | None) -> int | None:
    """'300 sec' / '1h' / '300' -> seconds (None if absent or unparsable), as the plugin reads MinJobAge."""
    m = re.match(r"^(\d+)\s*([a-zA-Z]*)", (value or "").strip())
    if not m:
        return None
    return int(m.group(1)) * (3600 if m.group(2).lower() in ("h", "hour", "hours") else 1)


def effective_status_command(requested: str, init_s: int, min_job_age: int | None, sacct_installed: bool) -> str:
    """The command the plugin (2.x, `check_active_jobs`) really queries with."""
    command = requested
    if command == "squeue" and (min_job_age is None or min_job_age < 3 * init_s) and sacct_installed:
        command = "sacct"
    if command == "sacct" and not sacct_installed:
        command = "squeue"
    return command


def probe_command(command: str) -> list[str]:
    """A query of the same form as the plugin's (no job of that name exists: an empty answer)."""
    name = "klrpn-status-probe"
    if command == "sacct":
        return ["sacct", "-X", "--parsable2", "--clusters", "all", "--noheader", "--format=JobIdRaw,State",
                "--starttime", "now-1hour", "--endtime", "now", "--name", name]
    return ["squeue", "--format=%i|%T", "--states=all", "--noheader", "--name", name]


def check_status_command(requested: str, init_s: int, *, run=subprocess.run, which=None) -> str:
    """Raise StatusCheckError unless the status command the plugin will use works on this cluster
    and sees every finished job; returns that command."""
    which = which or shutil.which
    conf = scontrol_config(run)
    min_job_age = seconds(conf.get("MinJobAge"))
    accounting = conf.get("AccountingStorageType", "?")
    command = effective_status_command(requested, init_s, min_job_age, which("sacct") is not None)
    fix_squeue = (f"on a cluster without accounting use `slurm-status-command: squeue` (the profile's "
                  f"default) with MinJobAge >= {max(3 * init_s, PLUGIN_MAX_CHECK_INTERVAL_S + 20)} s "
                  f"in slurm.conf (SLURM's default is 300)")
    if command != requested:
        why = (f"it uses sacct instead of squeue because MinJobAge ({min_job_age} s) < 3 x "
               f"slurm-init-seconds-before-status-checks ({init_s} s)")
    else:
        why = f"slurm-status-command: {requested}"
    probe = probe_command(command)
    try:
        proc = run(probe, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
        failed = proc.returncode != 0
        error = (proc.stderr or proc.stdout).strip().replace("\n", " ")
    except (OSError, subprocess.TimeoutExpired) as e:
        failed, error = True, str(e)
    if failed:
        hint = fix_squeue if command == "sacct" else "check that slurmctld answers `squeue`"
        raise StatusCheckError(
            f"the SLURM plugin would poll job status with `{command}` ({why}), and that fails on this "
            f"cluster (AccountingStorageType={accounting}): `{shlex.join(probe)}`: {error or 'no output'}. "
            f"Snakemake would never learn that a job finished. Fix: {hint}.")
    if command == "squeue" and (min_job_age is None or min_job_age <= PLUGIN_MAX_CHECK_INTERVAL_S):
        raise StatusCheckError(
            f"the SLURM plugin would poll job status with squeue, but this cluster forgets a finished "
            f"job after MinJobAge={min_job_age} s, while the plugin may wait up to "
            f"{PLUGIN_MAX_CHECK_INTERVAL_S} s between checks: a job could finish unseen. Fix: "
            f"{fix_squeue}, or `--slurm-status-command sacct` on a cluster with accounting (slurmdbd).")
    return command


# --- 2. the watch --------------------------------------------------------------------------------


@dataclass
class _Watch:
    timeout_s: float
    clock: callable = time.monotonic
    last_query: str = ""
    last_error: str | None = None      # None: the last query answered
    last_answer: dict = field(default_factory=dict)
    unknown_since: dict = field(default_factory=dict)   # external job id -> clock()
    reported: set = field(default_factory=set)


WATCH: _Watch | None = None


async def query_job_status(command: str, logger):
    """Drop-in for the plugin's `query_job_status`: same contract ((status dict, duration) or
    (None, None)), but remembers the answer and the error text for the watch."""
    start = time.time()
    error = None
    try:
        proc = await asyncio.create_subprocess_exec(*shlex.split(command), stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=QUERY_TIMEOUT_S)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            error = f"no answer within {QUERY_TIMEOUT_S} s"
        else:
            if proc.returncode != 0:
                error = f"exit {proc.returncode}: {err.decode(errors='replace').strip() or 'no message'}"
    except OSError as e:
        error = str(e)
    if WATCH is not None:
        WATCH.last_query, WATCH.last_error = command, error
    if error is not None:
        logger.debug(f"SLURM status query failed: `{command}`: {error}")
        return None, None
    status = {}
    for row in csv.reader(StringIO(out.decode()), delimiter="|"):
        if len(row) >= 2 and row[0].strip():
            status[row[0].strip()] = row[1].strip()
    if WATCH is not None:
        WATCH.last_answer = status
    return status, time.time() - start


def _listed(jobid: str, answer: dict) -> bool:
    # array tasks are listed as <jobid>_<task>; the plugin looks both up
    return jobid in answer or jobid.split("_")[0] in answer


def _wrap_check(original):
    async def check_active_jobs(self, active_jobs):
        watch = WATCH
        if watch is None:
            async for job in original(self, active_jobs):
                yield job
            return
        watch.last_error, watch.last_answer = "not queried", {}
        kept = [job async for job in original(self, active_jobs)]
        kept_ids = {job.external_jobid for job in kept}
        now = watch.clock()
        for job in active_jobs:
            jobid = job.external_jobid
            if jobid in watch.reported or (watch.last_error is None and _listed(jobid, watch.last_answer)):
                watch.unknown_since.pop(jobid, None)
                continue
            if watch.last_error is None:
                reason = f"SLURM does not list job {jobid} (`{watch.last_query}`)"
            else:
                reason = f"the status query failed: `{watch.last_query}`: {watch.last_error}"
            since = watch.unknown_since.setdefault(jobid, now)
            if now - since >= watch.timeout_s:
                watch.unknown_since.pop(jobid, None)
                kept = [j for j in kept if j.external_jobid != jobid]
                self.report_job_error(job, msg=(
                    f"no status for SLURM job {jobid} for {now - since:.0f} s "
                    f"(KLRPN_SLURM_STATUS_TIMEOUT={watch.timeout_s:g}); {reason}. Snakemake stops "
                    f"waiting for it; check `squeue -j {jobid}` / the job's log, fix the cluster, and "
                    "rerun (training resumes from its checkpoint)."))
                continue
            self.logger.warning(f"status of SLURM job {jobid} unknown for {now - since:.0f} s "
                                f"(gives up after {watch.timeout_s:g} s): {reason}")
            if jobid not in kept_ids:
                kept.append(job)     # the plugin dropped it: keep watching
        for job in kept:
            yield job

    check_active_jobs.__wrapped__ = original
    return check_active_jobs


def _wrap_report(original):
    def report(self, job_info, *args, **kwargs):
        if WATCH is not None:
            WATCH.reported.add(job_info.external_jobid)
        return original(self, job_info, *args, **kwargs)

    report.__wrapped__ = original
    return report


def check_plugin_version(v: str) -> None:
    """Raise StatusCheckError unless snakemake-executor-plugin-slurm version ``v`` is one this
    guard supports (also used by tests/test_lock.py on the locked version)."""
    try:
        major = int(v.split(".")[0])
    except ValueError:
        major = None
    if major not in SUPPORTED_PLUGIN_MAJOR:
        raise StatusCheckError(f"snakemake-executor-plugin-slurm {v} is not a version workflow/scripts/"
                               f"slurm_guard.py supports (majors {SUPPORTED_PLUGIN_MAJOR})")


def check_plugin():
    """The plugin module, after checking its version and that it has what the watch replaces."""
    from importlib.metadata import version

    import snakemake_executor_plugin_slurm as plugin

    v = version("snakemake-executor-plugin-slurm")
    check_plugin_version(v)
    if not hasattr(plugin, "query_job_status"):
        raise StatusCheckError(f"snakemake-executor-plugin-slurm {v} has no query_job_status, which "
                               f"workflow/scripts/slurm_guard.py replaces; it is not a version the "
                               f"guard supports (majors {SUPPORTED_PLUGIN_MAJOR})")
    return plugin


def install_watch(timeout_s: float, *, plugin=None, clock=time.monotonic) -> _Watch:
    """Patch the plugin's Executor class (idempotent) and start a fresh watch."""
    global WATCH
    plugin = plugin or check_plugin()
    cls = plugin.Executor
    if not hasattr(cls.check_active_jobs, "__wrapped__"):
        cls.check_active_jobs = _wrap_check(cls.check_active_jobs)
        cls.report_job_success = _wrap_report(cls.report_job_success)
        cls.report_job_error = _wrap_report(cls.report_job_error)
        plugin.query_job_status = query_job_status
    WATCH = _Watch(timeout_s=timeout_s, clock=clock)
    return WATCH


def status_timeout() -> float:
    raw = os.environ.get("KLRPN_SLURM_STATUS_TIMEOUT", str(DEFAULT_TIMEOUT_S))
    try:
        value = float(raw)
    except ValueError:
        value = -1
    if value <= 0:
        raise StatusCheckError(f"environment variable KLRPN_SLURM_STATUS_TIMEOUT={raw!r}: expected "
                               "a positive number of seconds")
    return value


def on_start(workflow, logger) -> None:
    """The Snakefile's onstart: check and watch when the slurm executor runs this workflow."""
    plugin_info = workflow.executor_plugin
    if plugin_info is None or plugin_info.name != "slurm" or workflow.dryrun:
        return
    settings = workflow.executor_settings
    plugin = check_plugin()
    timeout = status_timeout()
    command = check_status_command(settings.status_command, settings.init_seconds_before_status_checks)
    install_watch(timeout, plugin=plugin)
    logger.info(f"SLURM job status: polled with {command}; a job without status for {timeout:g} s "
                "is reported as failed (KLRPN_SLURM_STATUS_TIMEOUT)")
