"""The locked environment: requirements/lock.txt (bash scripts/lock.sh) against what is installed,
pyproject.toml's ranges and workflow/scripts/slurm_guard.py; scripts/lockfile.py on a canned lock."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "lock.txt"


def load(name: str, path: Path):
    """The module of a script outside the package (the one already loaded, if any)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module          # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


lockfile = load("klrpn_lockfile", REPO / "scripts" / "lockfile.py")
guard = load("slurm_guard", REPO / "workflow" / "scripts" / "slurm_guard.py")
ENTRIES = lockfile.read(LOCK)


def linux(python: str) -> dict:
    """Marker environment of CPython ``python`` (e.g. "3.12") on Linux x86_64."""
    return {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux",
            "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
            "implementation_name": "cpython", "platform_python_implementation": "CPython",
            "platform_release": "", "platform_version": "", "implementation_version": f"{python}.0",
            "extra": ""}


# --- the installed environment ------------------------------------------------------------------

def test_installed_versions_equal_the_lock():
    """Every locked package that applies to this interpreter is installed at its locked version
    (in an environment scripts/setup.sh installed; with KLRPN_TORCH, apart from the torch stack)."""
    prefix = Path(sys.prefix)
    if not (prefix / ".klrpn-lock").is_file():
        pytest.skip(f"{prefix} was not installed by scripts/setup.sh from {LOCK.name} (no .klrpn-lock)")
    skip = lockfile.torch_stack(ENTRIES) if (prefix / ".klrpn-torch").is_file() else set()
    bad = lockfile.mismatches(ENTRIES, skip=skip)
    assert not bad, "installed versions differ from requirements/lock.txt (run bash scripts/setup.sh): " + \
        ", ".join(f"{e.name} {got or 'missing'} (locked {e.version})" for e, got in bad)


def test_the_locked_slurm_plugin_is_one_the_guard_supports():
    versions = [e.version for e in ENTRIES if e.name == "snakemake-executor-plugin-slurm"]
    assert versions, "snakemake-executor-plugin-slurm is not in requirements/lock.txt"
    for v in versions:
        guard.check_plugin_version(v)          # raises StatusCheckError for an unsupported version


# --- the lock against its inputs ----------------------------------------------------------------

def project_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    pins = [line.strip() for line in (REPO / "requirements" / "lock.in").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    return [Requirement(r) for r in project["dependencies"] + extras["pipeline"] + extras["dev"] + pins]


@pytest.mark.parametrize("python", ["3.11", "3.12", "3.13"])
def test_pyproject_ranges_admit_the_locked_versions(python):
    locked = lockfile.for_this_python(ENTRIES, linux(python))
    for req in project_requirements():
        name = lockfile.canonical(req.name)
        assert name in locked, f"{req} (pyproject.toml / requirements/lock.in) is not locked for Python {python}"
        assert req.specifier.contains(locked[name].version, prereleases=True), \
            f"requirements/lock.txt locks {name} {locked[name].version}, outside {req} (rerun bash scripts/lock.sh)"


def test_the_lock_pins_torch_and_one_version_per_package():
    by_name: dict[str, set[str]] = {}
    for e in ENTRIES:
        by_name.setdefault(e.name, set()).add(e.version)
    assert by_name["torch"] == {"2.14.1"} and by_name["torchvision"] == {"0.29.1"}
    assert {n: v for n, v in by_name.items() if len(v) > 1} == {}     # scripts/lock.sh: --fork-strategy fewest
    assert all(e.text.count("--hash=sha256:") >= 1 for e in ENTRIES)
    assert "#    bash scripts/lock.sh\n" in LOCK.read_text()


def test_setup_and_environment_yml_install_the_lock():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == ["-r requirements/lock.txt"]
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert "lock=requirements/lock.txt" in setup and '--require-hashes -r "$lock"' in setup
    assert "--no-deps --no-build-isolation -e ." in setup


# --- scripts/lockfile.py on a canned lock -------------------------------------------------------

CANNED = """\
# This file was autogenerated by uv via the following command:
#    bash scripts/lock.sh
Jinja2==3.1.6 \\
    --hash=sha256:aa
    # via
    #   klrpn (pyproject.toml)
    #   torch
nvidia-cublas==13.1.1.3 ; sys_platform == 'linux' \\
    --hash=sha256:bb \\
    --hash=sha256:cc
    # via nvidia-cudnn-cu13
nvidia-cudnn-cu13==9.24.0.43 ; sys_platform == 'linux' \\
    --hash=sha256:dd
    # via torch
pywin32==312 ; sys_platform == 'win32' \\
    --hash=sha256:ee
    # via portalocker
torch==2.14.1 \\
    --hash=sha256:ff
    # via
    #   -r requirements/lock.in
    #   klrpn (pyproject.toml)
"""


def test_parse_reads_pins_markers_hashes_and_parents():
    entries = lockfile.parse(CANNED, "canned.txt")
    assert [(e.name, e.version, e.marker, e.via) for e in entries] == [
        ("jinja2", "3.1.6", None, ["klrpn", "torch"]),
        ("nvidia-cublas", "13.1.1.3", "sys_platform == 'linux'", ["nvidia-cudnn-cu13"]),
        ("nvidia-cudnn-cu13", "9.24.0.43", "sys_platform == 'linux'", ["torch"]),
        ("pywin32", "312", "sys_platform == 'win32'", ["portalocker"]),
        ("torch", "2.14.1", None, ["-r requirements/lock.in", "klrpn"]),
    ]
    assert entries[1].text == ("nvidia-cublas==13.1.1.3 ; sys_platform == 'linux' \\\n"
                               "    --hash=sha256:bb \\\n    --hash=sha256:cc\n    # via nvidia-cudnn-cu13\n")
    assert lockfile.torch_stack(entries) == {"torch", "torchvision", "nvidia-cudnn-cu13", "nvidia-cublas"}
    assert sorted(lockfile.for_this_python(entries, linux("3.11"))) == \
        ["jinja2", "nvidia-cublas", "nvidia-cudnn-cu13", "torch"]


def test_parse_names_the_file_and_line_of_a_bad_entry():
    with pytest.raises(lockfile.LockError, match=r"canned.txt:3: expected 'name==version"):
        lockfile.parse("# header\n\ntorch>=2\n", "canned.txt")
    with pytest.raises(lockfile.LockError, match="no requirements"):
        lockfile.parse("# only a header\n", "canned.txt")


def test_mismatches_compare_versions_exactly():
    entries = lockfile.parse(CANNED)
    installed = {"jinja2": "3.1.6", "nvidia-cublas": "13.1.1.3", "nvidia-cudnn-cu13": "9.24.0.43",
                 "torch": "2.14.1+cu126"}
    linux_only = {"nvidia-cublas", "nvidia-cudnn-cu13"} if sys.platform == "linux" else set()
    bad = lockfile.mismatches(entries, version_of=installed.get)
    assert [(e.name, got) for e, got in bad] == [("torch", "2.14.1+cu126")]   # the local build differs
    assert lockfile.mismatches(entries, skip=lockfile.torch_stack(entries), version_of=installed.get) == []
    del installed["jinja2"], installed["nvidia-cublas"]
    bad = lockfile.mismatches(entries, skip={"torch"}, version_of=installed.get)
    assert [(e.name, got) for e, got in bad] == [("jinja2", None)] + [("nvidia-cublas", None)] * bool(linux_only)


JINJA2, CUBLAS = CANNED.split("\n", 2)[2].split("nvidia-cudnn")[0].split("nvidia-cublas")
PYWIN32 = CANNED[CANNED.index("pywin32"):CANNED.index("torch==")]


def test_the_commands_write_the_entries_setup_installs(tmp_path, monkeypatch, capsys):
    lock = tmp_path / "lock.txt"
    lock.write_text(CANNED)
    out = tmp_path / "without.txt"
    assert lockfile.main(["without-torch", str(lock), str(out)]) == 0
    assert out.read_text() == JINJA2 + PYWIN32
    installed = {"jinja2": "3.1.5", "nvidia-cublas": "13.1.1.3", "nvidia-cudnn-cu13": "9.24.0.43",
                 "torch": "2.14.1"}
    monkeypatch.setattr(lockfile, "installed_version", installed.get)
    differs = tmp_path / "differs.txt"
    assert lockfile.main(["check", str(lock), "--write", str(differs)]) == 1
    assert differs.read_text() == JINJA2
    assert capsys.readouterr().err == f"{lock}: jinja2 is locked at 3.1.6 but 3.1.5 is installed\n"
    installed["jinja2"] = "3.1.6"
    assert lockfile.main(["check", str(lock), "--write", str(differs)]) == 0 and differs.read_text() == ""
    assert lockfile.main(["check", str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt: cannot read the lock file" in capsys.readouterr().err
