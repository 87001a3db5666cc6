"""Read requirements/lock.txt (written by scripts/lock.sh) and compare it with an environment.

Used by scripts/setup.sh and tests/test_lock.py; it needs only the standard library and
`packaging` (pip's own copy when the environment has none yet), so setup.sh can run it with a
bare venv's Python.

    python scripts/lockfile.py check LOCK [--except-torch] [--write FILE] [--quiet]
        exit 1 (and name each package) when an installed version differs from the lock or a
        locked package is missing; --write FILE writes those packages' lock entries (hashes
        included) to FILE, for `pip install --force-reinstall --no-deps --require-hashes -r FILE`
    python scripts/lockfile.py without-torch LOCK FILE
        the lock without the torch stack, for an environment whose torch comes from KLRPN_TORCH

The torch stack is torch, torchvision and every locked package that only they need (the CUDA
libraries, triton, sympy, ...), read from the `# via` annotations uv writes.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "lock.txt"
TORCH = ("torch", "torchvision")

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


class LockError(Exception):
    """The lock file cannot be read (message names the file and the line)."""


@dataclass
class Entry:
    name: str                 # canonical (PEP 503) name
    version: str
    marker: str | None        # environment marker, None when the entry applies everywhere
    text: str                 # the entry as the lock writes it: pin, hashes, annotations
    via: list[str] = field(default_factory=list)   # canonical names (or "-r FILE") needing it


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _packaging():
    try:
        from packaging import markers, version
    except ImportError:       # a fresh venv: pip's vendored copy
        from pip._vendor.packaging import markers, version
    return markers, version


def parse(text: str, source: str | Path = LOCK) -> list[Entry]:
    """The entries of a lock file written by ``uv pip compile --generate-hashes`` (split
    annotations)."""
    entries: list[Entry] = []
    lines: list[str] = []
    in_via = False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or (line.startswith("#") and not entries):
            continue
        if not line.startswith((" ", "\t", "#")):
            m = _PIN.match(line)
            if not m:
                raise LockError(f"{source}:{number}: expected 'name==version [; marker] \\', got {line!r}")
            if entries:
                entries[-1].text = "\n".join(lines) + "\n"
            name, version, marker = m.groups()
            entries.append(Entry(canonical(name), version, marker.strip() if marker else None, ""))
            lines, in_via = [line], False
            continue
        if not entries:
            raise LockError(f"{source}:{number}: {line!r} before the first requirement")
        lines.append(line)
        comment = stripped.lstrip("#").strip()
        if comment.startswith("via"):
            rest = comment[3:].strip()
            in_via = not rest
            if rest:
                entries[-1].via.append(_parent(rest))
        elif in_via and comment and stripped.startswith("#"):
            entries[-1].via.append(_parent(comment))
    if entries:
        entries[-1].text = "\n".join(lines) + "\n"
    if not entries:
        raise LockError(f"{source}: no requirements")
    return entries


def _parent(annotation: str) -> str:
    # "klrpn (pyproject.toml)" -> "klrpn"; "-r requirements/lock.in" stays as it is
    return annotation if annotation.startswith("-") else canonical(annotation.split()[0])


def read(path: str | Path = LOCK) -> list[Entry]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise LockError(f"{path}: cannot read the lock file ({e}); bash scripts/lock.sh writes it") from None
    return parse(text, path)


def applies(entry: Entry, environment: dict | None = None) -> bool:
    """Whether the entry's marker holds for this interpreter (or ``environment``)."""
    if entry.marker is None:
        return True
    markers, _ = _packaging()
    return markers.Marker(entry.marker).evaluate(environment)


def for_this_python(entries: list[Entry], environment: dict | None = None) -> dict[str, Entry]:
    """``{name: entry}`` of the entries that apply here (one version per package)."""
    chosen: dict[str, Entry] = {}
    for e in entries:
        if applies(e, environment):
            if e.name in chosen:
                raise LockError(f"{LOCK}: two entries for {e.name} apply here "
                                f"({chosen[e.name].version} and {e.version})")
            chosen[e.name] = e
    return chosen


def torch_stack(entries: list[Entry]) -> set[str]:
    """torch, torchvision and the locked packages that only they (transitively) need."""
    stack = set(TORCH)
    changed = True
    while changed:
        changed = False
        for e in entries:
            if e.name not in stack and e.via and set(e.via) <= stack:
                stack.add(e.name)
                changed = True
    return stack


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def mismatches(entries: list[Entry], *, skip: set[str] = frozenset(),
               version_of=None) -> list[tuple[Entry, str | None]]:
    """``(entry, installed version or None)`` for each locked package (that applies here and
    is not in ``skip``) whose installed version (``version_of(name)``, default the installed
    distribution's) differs from the lock."""
    _, version = _packaging()
    version_of = version_of or installed_version
    bad = []
    for name, e in sorted(for_this_python(entries).items()):
        if name in skip:
            continue
        got = version_of(name)
        if got is None or version.Version(got) != version.Version(e.version):
            bad.append((e, got))
    return bad


def _write(path: str | Path, text: str) -> None:
    sys.path.insert(0, str(REPO))
    from klrpn.atomic import atomic_write_text

    atomic_write_text(path, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/lockfile.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="installed versions == the lock?")
    check.add_argument("lock", type=Path)
    check.add_argument("--except-torch", action="store_true", help="leave the torch stack out")
    check.add_argument("--write", type=Path, help="write the differing packages' lock entries here")
    check.add_argument("--quiet", action="store_true")
    strip = sub.add_parser("without-torch", help="the lock without the torch stack")
    strip.add_argument("lock", type=Path)
    strip.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    try:
        entries = read(args.lock)
        if args.command == "without-torch":
            stack = torch_stack(entries)
            _write(args.out, "".join(e.text for e in entries if e.name not in stack))
            return 0
        bad = mismatches(entries, skip=torch_stack(entries) if args.except_torch else set())
    except LockError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.write:
        _write(args.write, "".join(e.text for e, _ in bad))
    if bad and not args.quiet:
        for e, got in bad:
            print(f"{args.lock}: {e.name} is locked at {e.version} but "
                  f"{'not installed' if got is None else got + ' is installed'}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
