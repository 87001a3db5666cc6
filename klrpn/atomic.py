"""Atomic file output: every writer of klrpn writes a temporary sibling, then renames it.

A reader (a pipeline, a resumed run, a person) sees either the old file or the complete new one,
never a half-written file; a writer that fails or is killed leaves at most a hidden
``.<name>.<random>.tmp`` beside it (:func:`remove_partials` deletes those).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

PARTIAL_GLOB = ".*.tmp"


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block succeeds, rename it onto
    ``path`` (after an fsync with ``fsync=True``). On an exception the temporary file is removed
    and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)     # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: str | os.PathLike, doc: Any, *, indent: int | None = 2,
                      sort_keys: bool = False) -> Path:
    """``doc`` as JSON (one trailing newline) to ``path``, atomically."""
    return atomic_write_text(path, json.dumps(doc, indent=indent, sort_keys=sort_keys) + "\n")


def remove_partials(folder: str | os.PathLike) -> None:
    """Delete the temporary files killed writers left in ``folder``."""
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.glob(PARTIAL_GLOB):
            p.unlink(missing_ok=True)
