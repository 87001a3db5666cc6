"""Downloads against a local HTTP server: checksums, resume, unsafe archives, idempotence."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import pytest

from klrpn.cli import main
from klrpn.data.download import ArchiveError, ChecksumError, DownloadError, download, read_manifest

HEADER = "name\tgroup\tfile\tbytes\tsha256\turl\tmirrors\textract_to\n"


def make_tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def write_manifest(path, rows):
    """rows: (name, group, file, data or size, sha256, url, extract_to)."""
    lines = [HEADER]
    for name, group, file, size, sha, url, extract_to in rows:
        lines.append(f"{name}\t{group}\t{file}\t{size}\t{sha}\t{url}\t-\t{extract_to}\n")
    path.write_text("# test manifest\n" + "".join(lines))
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def voc_tar():
    return make_tar({"VOCdevkit/VOC2007/ImageSets/Main/test.txt": b"000001\n",
                     "VOCdevkit/VOC2007/Annotations/000001.xml": b"<annotation/>" * 500})


def test_download_verifies_and_unpacks_then_second_run_is_noop(tmp_path, file_server, voc_tar):
    file_server.files["/voc.tar.gz"] = voc_tar
    manifest = write_manifest(tmp_path / "m.tsv", [
        ("voc-test", "voc", "voc.tar.gz", len(voc_tar), sha(voc_tar), file_server.url + "/voc.tar.gz", ".")])
    messages = []
    download(["voc"], root=tmp_path / "data", manifest=manifest, progress=False, log=messages.append)
    assert (tmp_path / "data/VOCdevkit/VOC2007/ImageSets/Main/test.txt").read_bytes() == b"000001\n"
    assert not (tmp_path / "data/downloads/voc.tar.gz").exists()  # archive removed after unpacking
    assert len(file_server.requests) == 1
    download(["voc-test"], root=tmp_path / "data", manifest=manifest, progress=False,
             log=messages.append)
    assert len(file_server.requests) == 1  # nothing fetched again
    assert "nothing to do" in messages[-1]


def test_wrong_checksum_names_file_and_removes_it(tmp_path, file_server, voc_tar):
    file_server.files["/voc.tar.gz"] = voc_tar
    manifest = write_manifest(tmp_path / "m.tsv", [
        ("voc-test", "voc", "voc.tar.gz", len(voc_tar), "0" * 64, file_server.url + "/voc.tar.gz", ".")])
    with pytest.raises(ChecksumError) as err:
        download(["voc"], root=tmp_path / "data", manifest=manifest, progress=False, log=print)
    assert "voc.tar.gz" in str(err.value) and "0" * 64 in str(err.value)
    assert sha(voc_tar) in str(err.value)
    assert not any((tmp_path / "data/downloads").iterdir())
    assert not (tmp_path / "data/VOCdevkit").exists()


def test_wrong_size_is_reported(tmp_path, file_server, voc_tar):
    file_server.files["/voc.tar.gz"] = voc_tar
    manifest = write_manifest(tmp_path / "m.tsv", [
        ("voc-test", "voc", "voc.tar.gz", len(voc_tar) + 7, sha(voc_tar),
         file_server.url + "/voc.tar.gz", ".")])
    with pytest.raises(ChecksumError, match=f"expected {len(voc_tar) + 7} bytes, got {len(voc_tar)}"):
        download(["voc"], root=tmp_path / "data", manifest=manifest, progress=False, retries=1,
                 log=lambda *_: None)


def test_dropped_connection_resumes_with_range(tmp_path, file_server):
    weights = bytes(range(256)) * 4000
    file_server.files["/w.pth"] = weights
    file_server.drop_once.add("/w.pth")
    manifest = write_manifest(tmp_path / "m.tsv", [  # size unknown, sha256 prefix only
        ("w", "weights", "w.pth", "unknown", sha(weights)[:8], file_server.url + "/w.pth", "-")])
    logs = []
    out = download(["weights"], root=tmp_path / "data", manifest=manifest, progress=False,
                   log=logs.append)[0]
    assert out.read_bytes() == weights
    assert file_server.requests[0] == ("/w.pth", None)
    assert file_server.requests[1] == ("/w.pth", f"bytes={len(weights) // 2}-")
    assert any("resuming" in m for m in logs)


def test_prefix_mismatch_is_an_error(tmp_path, file_server):
    file_server.files["/w.pth"] = b"abc" * 100
    manifest = write_manifest(tmp_path / "m.tsv", [
        ("w", "weights", "w.pth", "unknown", "deadbeef", file_server.url + "/w.pth", "-")])
    with pytest.raises(ChecksumError, match="sha256 prefix mismatch: expected deadbeef"):
        download(["w"], root=tmp_path / "data", manifest=manifest, progress=False, log=print)
    assert not (tmp_path / "data/weights/w.pth").exists()


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_archive_escaping_the_target_is_refused(tmp_path, file_server, kind):
    members = {"coco/ok.txt": b"fine", "../escape": b"evil"}
    data = make_tar(members) if kind == "tar" else make_zip(members)
    file_server.files["/a"] = data
    manifest = write_manifest(tmp_path / "m.tsv", [
        ("a", "coco", "a.bin", len(data), sha(data), file_server.url + "/a", "coco")])
    with pytest.raises(ArchiveError, match="nothing extracted"):
        download(["a"], root=tmp_path / "data", manifest=manifest, progress=False, log=print)
    assert not (tmp_path / "data/escape").exists() and not (tmp_path / "escape").exists()
    assert not list((tmp_path / "data/coco").rglob("ok.txt"))
    assert not (tmp_path / "data/.klrpn-downloads/a.json").exists()


def test_tar_link_pointing_outside_is_refused(tmp_path, file_server):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("VOCdevkit/link")
        link.type, link.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
        tar.addfile(link)
    data = buf.getvalue()
    file_server.files["/l.tar"] = data
    manifest = write_manifest(tmp_path / "m.tsv", [
        ("l", "voc", "l.tar", len(data), sha(data), file_server.url + "/l.tar", ".")])
    with pytest.raises(ArchiveError):
        download(["l"], root=tmp_path / "data", manifest=manifest, progress=False, log=print)
    assert not (tmp_path / "data/VOCdevkit").exists()


def test_truncated_archive_leaves_nothing_extracted(tmp_path, file_server):
    data = make_zip({"annotations/x.json": bytes(range(256)) * 400})
    data = data[: len(data) // 2]  # checksum matches the truncated file: the archive is bad
    file_server.files["/t.zip"] = data
    manifest = write_manifest(tmp_path / "m.tsv", [
        ("t", "coco", "t.zip", len(data), sha(data), file_server.url + "/t.zip", "coco")])
    with pytest.raises(ArchiveError, match="corrupt or truncated"):
        download(["t"], root=tmp_path / "data", manifest=manifest, progress=False, log=print)
    assert not list((tmp_path / "data/coco").rglob("*.json"))
    assert not (tmp_path / "data/.klrpn-downloads/t.json").exists()


def test_mirror_is_tried_first_and_unknown_target_is_an_error(tmp_path, file_server, voc_tar):
    file_server.files["/mirror/voc.tar.gz"] = voc_tar
    manifest = write_manifest(tmp_path / "m.tsv", [
        ("voc-test", "voc", "voc.tar.gz", len(voc_tar), sha(voc_tar), "http://127.0.0.1:9/none", ".")])
    assert main(["data", "download", "voc", "--root", str(tmp_path / "data"), "--manifest",
                 str(manifest), "--mirror", file_server.url + "/mirror", "--no-progress"]) == 0
    assert (tmp_path / "data/VOCdevkit/VOC2007/ImageSets/Main/test.txt").is_file()
    with pytest.raises(DownloadError, match="unknown download target 'cocoa'"):
        download(["cocoa"], root=tmp_path / "data", manifest=manifest)


def test_packaged_manifest_pins_every_file():
    entries = {e.name: e for e in read_manifest()}
    assert {e.group for e in entries.values()} == {"coco", "voc", "weights"}
    assert entries["coco-val2017"].size == 815585330
    assert entries["coco-val2017"].sha256.startswith("4f7e2ccb")
    assert entries["vgg16"].size is None and entries["vgg16"].sha256 == "397923af"
    assert entries["voc2007-test"].mirrors  # a fallback host for VOC
    assert all(len(e.sha256) == 64 for e in entries.values() if e.group != "weights")
