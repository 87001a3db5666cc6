"""Checksummed, resumable, idempotent downloads of the datasets and pretrained weights.

Every file is pinned in a manifest (``manifest.tsv`` beside this module, or ``--manifest``):
name, group, file, size, sha256 (full, or a published prefix checked as a prefix), URL,
fallback mirrors, and where the archive is unpacked. For each selected entry:

1. a marker ``<root>/.klrpn-downloads/<name>.json`` with the same sha256 -> nothing to do;
2. fetch into ``<root>/downloads/<file>.part``, resuming with HTTP Range after a dropped
   connection, trying ``--mirror`` first, then the manifest URL and its mirrors;
3. verify size and sha256; a mismatch removes the file and raises :class:`ChecksumError`;
4. rename to ``<root>/downloads/<file>`` (weights: ``<root>/weights/<file>``);
5. archives are unpacked into a staging folder (tar: ``filter="data"``; zip: members checked
   for absolute paths, ``..`` and links first), moved into ``<root>/<extract_to>``, then the
   marker is written and the archive deleted (unless ``keep_archives``).
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import json
import os
import shutil
import stat
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from tqdm import tqdm

from klrpn.atomic import atomic_write_json
from klrpn.layout import download_marker

DEFAULT_MANIFEST = Path(__file__).with_name("manifest.tsv")
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A file could not be fetched, verified or unpacked."""


class ChecksumError(DownloadError):
    """Size or sha256 of a downloaded file differs from the manifest."""


class ArchiveError(DownloadError):
    """A corrupt, truncated or unsafe archive."""


@dataclass(frozen=True)
class Entry:
    name: str
    group: str
    file: str
    size: int | None  # None: unknown
    sha256: str  # 64 hex digits, or a published prefix
    url: str
    mirrors: tuple[str, ...]
    extract_to: str | None  # None: not an archive; kept in <root>/weights/


def read_manifest(path=None) -> list[Entry]:
    """Parse a manifest TSV (``#`` comment lines, then a header row)."""
    path = Path(path or DEFAULT_MANIFEST)
    try:
        lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    except OSError as err:
        raise DownloadError(f"cannot read manifest {path}: {err}") from err
    entries = []
    for row in csv.DictReader(lines, delimiter="\t"):
        try:
            sha = row["sha256"].strip().lower()
            if not sha or any(c not in "0123456789abcdef" for c in sha) or len(sha) > 64:
                raise ValueError(f"sha256 {sha!r} is not hex")
            entries.append(Entry(
                name=row["name"], group=row["group"], file=row["file"],
                size=None if row["bytes"] == "unknown" else int(row["bytes"]), sha256=sha,
                url=row["url"], mirrors=tuple(m for m in row["mirrors"].split(",") if m != "-"),
                extract_to=None if row["extract_to"] == "-" else row["extract_to"]))
        except (KeyError, ValueError, AttributeError) as err:
            raise DownloadError(f"{path}: bad row {row}: {err}") from err
    return entries


def select(entries: list[Entry], targets: list[str]) -> list[Entry]:
    """Entries named by group (``coco``, ``voc``, ``weights``) or by entry name."""
    chosen = []
    for target in targets:
        hits = [e for e in entries if target in (e.group, e.name)]
        if not hits:
            choices = sorted({e.group for e in entries} | {e.name for e in entries})
            raise DownloadError(f"unknown download target {target!r}; choose from {choices}")
        chosen += [e for e in hits if e not in chosen]
    return chosen


def download(targets: list[str], *, root, manifest=None, mirror: str | None = None,
             keep_archives: bool = False, retries: int = 5, progress: bool = True,
             log=print) -> list[Path]:
    """Fetch, verify and unpack ``targets`` under ``root``; returns the output paths."""
    root = Path(root)
    return [fetch_entry(e, root, mirror=mirror, keep_archives=keep_archives, retries=retries,
                        progress=progress, log=log)
            for e in select(read_manifest(manifest), targets)]


def fetch_entry(entry: Entry, root: Path, *, mirror=None, keep_archives=False, retries=5,
                progress=True, log=print) -> Path:
    """One manifest entry, end to end (see the module docstring)."""
    output = root / entry.extract_to if entry.extract_to else root / "weights" / entry.file
    marker = download_marker(root, entry.name)
    if marker.is_file() and json.loads(marker.read_text()).get("sha256") == entry.sha256 \
            and output.exists():
        log(f"{entry.name}: already downloaded and verified ({output}), nothing to do")
        return output
    final = output if entry.extract_to is None else root / "downloads" / entry.file
    if not final.is_file():
        part = final.with_name(final.name + ".part")
        part.parent.mkdir(parents=True, exist_ok=True)
        urls = ([join_mirror(mirror, entry.file)] if mirror else []) + [entry.url, *entry.mirrors]
        fetch_urls(urls, part, entry.size, retries=retries, progress=progress, log=log)
        verify(part, entry)
        os.replace(part, final)
    else:
        verify(final, entry)
    if entry.extract_to is not None:
        log(f"{entry.name}: unpacking {final.name} into {output}")
        extract(final, output)
    write_marker(marker, entry)
    if entry.extract_to is not None and not keep_archives:
        final.unlink()
    log(f"{entry.name}: done ({output})")
    return output


def join_mirror(mirror: str, file: str) -> str:
    """``mirror`` (URL or local folder) + file name."""
    return mirror.rstrip("/") + "/" + file


def fetch_urls(urls: list[str], part: Path, size: int | None, *, retries: int, progress: bool,
               log=print) -> None:
    """Fill ``part`` from the first URL that works, resuming after dropped connections."""
    errors = []
    for url in urls:
        for attempt in range(retries + 1):
            try:
                if fetch_once(url, part, size, progress=progress):
                    return
                reason = "connection closed early"
            except urllib.error.HTTPError as err:
                errors.append(f"{url}: HTTP {err.code}")
                break  # a server's answer, not a glitch: try the next URL
            except FileNotFoundError as err:
                errors.append(f"{url}: {err.strerror}")
                break
            except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
                reason = str(err)
            have = part.stat().st_size if part.exists() else 0
            log(f"{part.name}: {reason} at {have} bytes; resuming ({attempt + 1}/{retries})")
            time.sleep(min(0.2 * 2 ** attempt, 5.0))
        else:
            errors.append(f"{url}: gave up after {retries} retries")
    raise DownloadError(f"could not download {part.name[:-5]}: " + "; ".join(errors))


def fetch_once(url: str, part: Path, size: int | None, *, progress: bool) -> bool:
    """One request appending to ``part`` from its current length. True when complete."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    if size is not None and have == size:
        return True
    if urlparse(url).scheme in ("", "file"):  # a local mirror folder
        source = Path(urlparse(url).path if url.startswith("file:") else url)
        shutil.copyfile(source, part)
        return True
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left past our end: the file is complete
            return True
        raise
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored Range: start over
        length = response.headers.get("Content-Length")
        expected = have + int(length) if length is not None else size
        with open(part, "ab" if have else "wb") as out, tqdm(
                total=size or expected, initial=have, unit="B", unit_scale=True,
                unit_divisor=1024, desc=part.name[:-5], disable=not progress) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
    got = part.stat().st_size
    return expected is None or got >= expected


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, entry: Entry) -> None:
    """Check size and sha256 (prefix where only a prefix is known); remove a bad file."""
    actual_size = path.stat().st_size
    if entry.size is not None and actual_size != entry.size:
        path.unlink()
        raise ChecksumError(f"{entry.file}: size mismatch: expected {entry.size} bytes, got "
                            f"{actual_size}; the bad file was removed")
    actual = sha256_of(path)
    if not actual.startswith(entry.sha256):
        path.unlink()
        kind = "sha256" if len(entry.sha256) == 64 else "sha256 prefix"
        raise ChecksumError(f"{entry.file}: {kind} mismatch: expected {entry.sha256}, got "
                            f"{actual}; the bad file was removed")


def write_marker(marker: Path, entry: Entry) -> None:
    atomic_write_json(marker, {"file": entry.file, "sha256": entry.sha256, "size": entry.size},
                      indent=None, sort_keys=True)


def extract(archive: Path, target: Path) -> None:
    """Unpack safely into a staging folder, then move the files into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f".klrpn-unpack-{archive.name}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if zipfile.is_zipfile(archive):
            _unzip(archive, staging)
        else:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
    except ArchiveError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except tarfile.FilterError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise ArchiveError(f"{archive}: unsafe member, nothing extracted: {err}") from err
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise ArchiveError(f"{archive}: corrupt or truncated archive, nothing extracted: "
                           f"{err}") from err
    for folder, _, files in os.walk(staging):
        dest = target / Path(folder).relative_to(staging)
        dest.mkdir(parents=True, exist_ok=True)
        for name in files:
            os.replace(Path(folder) / name, dest / name)
    shutil.rmtree(staging)


def _unzip(archive: Path, staging: Path) -> None:
    """Extract a zip after checking every member (zipfile itself only strips ``..``)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            if info.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise ArchiveError(f"{archive}: unsafe member {info.filename!r} would land "
                                   "outside the target, nothing extracted")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ArchiveError(f"{archive}: member {info.filename!r} is a link, nothing "
                                   "extracted")
        zf.extractall(staging)  # reading checks each member's CRC


# --- what a cell needs downloaded (klrpn data check, the Snakemake workflow's inputs) ---------

def download_entries(cfg: dict) -> list[str]:
    """Manifest entries a resolved cell configuration reads: its dataset's group and, if
    pretrained, its backbone's ImageNet weights (last)."""
    manifest = read_manifest()
    names = [e.name for e in manifest if e.group == cfg["dataset"]["format"]]
    if cfg["model"]["pretrained"]:
        backbone = cfg["model"]["backbone"]
        if backbone not in {e.name for e in manifest}:
            raise ValueError(f"model.backbone {backbone!r}: no ImageNet weights of that name in the "
                             "download manifest (klrpn/data/manifest.tsv)")
        names.append(backbone)
    return names


def needed_markers(cfg: dict) -> list[Path]:
    """The download markers of :func:`download_entries`: under the dataset root's parent for the
    dataset, under ``model.weights_dir``'s parent for the weights (where ``klrpn data download
    --root`` writes them)."""
    names = download_entries(cfg)
    roots = [Path(cfg["dataset"]["root"]).parent] * len(names)
    if cfg["model"]["pretrained"]:
        roots[-1] = Path(cfg["model"]["weights_dir"]).parent
    return [download_marker(root, name) for root, name in zip(roots, names)]
