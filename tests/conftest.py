"""Shared fixtures: a local HTTP server on 127.0.0.1, a throwaway copy of the project as a git repo."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"
VENV_BIN = Path(sys.executable).parent

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
TIERS = ("code", "data", "model", "e2e")  # the folders under tests/, fastest first


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test carries its folder's tier as a marker; the tiers run in order, end to end last."""
    def tier(item: pytest.Item) -> int:
        folder = Path(str(item.fspath)).parent.name
        return TIERS.index(folder) if folder in TIERS else len(TIERS)

    for item in items:
        if tier(item) < len(TIERS):
            item.add_marker(getattr(pytest.mark, TIERS[tier(item)]))
    items.sort(key=tier)  # stable: file order within a tier stays


class FileServer:
    """Serves ``files`` (path -> bytes) like a real static server: a strong ETag per file, HTTP Range
    honoured only when If-Range still matches. Scripted faults per path:
    ``fail[path] = n`` answers 500 n times; ``answers[path] = [(status, headers), ...]`` answers those first
    (e.g. 429 with Retry-After); ``drop[path] = k`` cuts the first full response after k bytes;
    ``trickle[path] = (k, pause_s, count)`` sends the first full response k bytes at a time with a pause
    (``count`` pieces, then hangs up); ``gzip`` paths are sent gzip-encoded whatever the client asked;
    ``validators = False`` sends neither ETag nor Last-Modified. If-None-Match with the current ETag is
    answered 304 Not Modified."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.fail: dict[str, int] = {}
        self.answers: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.drop: dict[str, int] = {}
        self.trickle: dict[str, tuple[int, float, int]] = {}
        self.gzip: set[str] = set()
        self.validators = True
        self.requests: list[tuple[str, str | None]] = []
        self.if_range: list[str | None] = []
        self.not_modified: list[str] = []  # paths answered 304 Not Modified
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path
                server.requests.append((path, self.headers.get("Range")))
                server.if_range.append(self.headers.get("If-Range"))
                if server.answers.get(path):
                    status, headers = server.answers[path].pop(0)
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if server.fail.get(path, 0) > 0:
                    server.fail[path] -= 1
                    self.send_error(500, "scripted failure")
                    return
                if path not in server.files:
                    self.send_error(404)
                    return
                data = server.files[path]
                etag = '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
                if server.validators and self.headers.get("If-None-Match") == etag:
                    server.not_modified.append(path)
                    self.send_response(304)
                    self.end_headers()
                    return
                start = 0
                wanted = self.headers.get("Range")
                if wanted and path not in server.gzip and self.headers.get("If-Range") in (None, etag):
                    start = int(wanted.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                if path in server.gzip:
                    body = gzip.compress(body)
                    self.send_header("Content-Encoding", "gzip")
                if server.validators:
                    self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.drop.pop(path, None) if start == 0 else None
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                slow = server.trickle.pop(path, None) if start == 0 else None
                if slow is not None:
                    piece, pause, count = slow
                    for k in range(count):
                        self.wfile.write(body[k * piece : (k + 1) * piece])
                        self.wfile.flush()
                        time.sleep(pause)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    """An untrained CoroNet at 71 px with the train stage's run.json beside it."""
    import keras

    from coronet.files import write_json
    from coronet.model import build_model

    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("model")
    build_model(["covid", "normal", "pneumonia_bacterial", "pneumonia_viral"], 71, "none").save(folder / "coronet.keras")
    write_json(folder / "run.json", {"run_id": None, "model": {
        "classes": ["covid", "normal", "pneumonia_bacterial", "pneumonia_viral"], "image_size": 71, "weights": "none",
        "groups": {"covid": ["covid"], "normal": ["normal"], "pneumonia": ["pneumonia_bacterial", "pneumonia_viral"]},
        "resize": {"size": 96, "mode": "stretch"}}})
    return folder / "coronet.keras"


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    server = FileServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never through a proxy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(command: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None,
                 timeout: float = 120) -> subprocess.Popen:
    """Starts a server of the venv in its own session, its output in ``log`` (a pipe that fills would
    block it), and waits until ``ready_url`` answers; fails with the log's tail if it dies or never does."""
    process = subprocess.Popen(command, env={**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
                                             **(env or {})},
                               stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            with LOOPBACK.open(ready_url, timeout=2):
                return process
        except OSError:
            assert time.monotonic() < deadline, f"{command[0]} did not come up:\n{log.read_text()[-3000:]}"
            time.sleep(1)


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True)
    return [p for p in out.stdout.decode().split("\0") if p and (ROOT / p).is_file()]


def make_project(dest: Path, overrides: dict[str, object] | None = None) -> Path:
    """A copy of this project's files (as git sees them) in a new git repo, params overridden."""
    for rel in tracked_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    if overrides:
        set_params(dest, overrides)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "baseline")
    return dest


def set_params(project: Path, overrides: dict[str, object]) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in overrides.items():
        node = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


def run_tool(cwd: Path, *args: str, env: dict[str, str] | None = None, check: bool = True,
             timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Runs a command of the venv (dvc, python) in ``cwd`` with the venv first on PATH."""
    full_env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    result = subprocess.run(list(args), cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


TINY = {
    "download.source": "synthetic",
    "download.synthetic.images_per_class": 12,
    "download.synthetic.image_size": 128,
    "resize.size": 96,
    "train.image_size": 71,
    "train.weights": "none",
    "train.epochs": 2,
    "train.learning_rate": 0.001,
    "train.bn_momentum": 0.9,
    "train.recalibrate_bn": True,
}
