"""Fixtures for the data tests: a small synthetic tree and a local HTTP file server."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from klrpn.data.synthetic import generate

SMALL_SIZES = {"coco/train2017": 24, "coco/val2017": 12, "VOC2007/trainval": 16,
               "VOC2007/test": 12, "VOC2012/trainval": 12}


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """The default-size synthetic dataset, seed 0, generated once per session."""
    root = tmp_path_factory.mktemp("synth") / "synthetic"
    generate(root, seed=0, log=lambda *_: None)
    return root


@pytest.fixture
def small_sizes():
    return dict(SMALL_SIZES)


@pytest.fixture
def coco_cfg():
    """Factory: the cfg dict of a COCO cell on the synthetic ``root``."""
    return make_coco_cfg


@pytest.fixture
def voc_cfg():
    """Factory: the cfg dict of a VOC 07+12 cell on the synthetic ``root``."""
    return make_voc_cfg


# the baseline's training-data options, as in params/defaults.yaml
BASELINE_DATASET = {"use_difficult_train": True, "use_crowd_train": True, "drop_empty_train": True,
                    "max_gt_boxes": 20}
BASELINE_INPUT = {"min_size": [600], "max_size": None, "test_min_size": 600, "flip": True,
                  "aspect_crop": [0.5, 2.0]}


def make_coco_cfg(root, *, input=None, **dataset):
    return {"dataset": {"name": "coco", "format": "coco", "root": str(root / "coco"),
                        "train": ["train2017"], "test": "val2017", "classes": None,
                        "num_classes": 3, **BASELINE_DATASET, "max_gt_boxes": 50, **dataset},
            "input": {**BASELINE_INPUT, **(input or {})}}


def make_voc_cfg(root, *, input=None, **dataset):
    return {"dataset": {"name": "voc0712", "format": "voc", "root": str(root / "VOCdevkit"),
                        "train": ["2007_trainval", "2012_trainval"], "test": "2007_test",
                        "classes": ["circle", "square", "triangle"], "num_classes": 3,
                        **BASELINE_DATASET, **dataset},
            "input": {**BASELINE_INPUT, **(input or {})}}


class FileServer:
    """Serves ``files`` (path -> bytes) with HTTP Range support. Paths in ``drop_once`` are
    cut off half-way (connection closed) the first time they are requested."""

    def __init__(self):
        self.files, self.drop_once, self.requests = {}, set(), []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if self.path in server.drop_once:
                    server.drop_once.discard(self.path)
                    payload = payload[: len(payload) // 2]
                    self.close_connection = True
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def file_server():
    server = FileServer()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()
