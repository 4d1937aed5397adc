"""Shared fixtures: a local HTTP server on 127.0.0.1, a throwaway copy of the project as a git repo."""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import json
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
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from coronet.params import ClassScheme, TrainParams, load_params

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"
VENV_BIN = Path(sys.executable).parent

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
TIERS = ("code", "data", "model", "e2e")  # the folders under tests/, fastest first


SHARED = {"pipeline", "pipeline_copy"}  # the fixtures that read the session's shared pipeline run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test carries its folder's tier as a marker; the tiers run in order, end to end last. In parallel
    (`make test`: pytest-xdist, `--dist loadfile`, each file on one worker) the end-to-end files go first, the
    slowest reader of the shared pipeline (it builds the run) beside the ones that need none, so the other
    workers are busy while the run is built, then the other readers, slowest first; the short tests fill in
    around them."""
    def tier(item: pytest.Item) -> int:
        folder = Path(str(item.fspath)).parent.name
        return TIERS.index(folder) if folder in TIERS else len(TIERS)

    for item in items:
        if tier(item) < len(TIERS):
            item.add_marker(getattr(pytest.mark, TIERS[tier(item)]))
    if "PYTEST_XDIST_WORKER" not in os.environ:
        items.sort(key=tier)  # stable: file order within a tier stays
        return

    def cost(item: pytest.Item) -> float:  # the slowest files first, so they start early: their cost marker
        marker = item.get_closest_marker("cost")
        return -float(marker.args[0]) if marker else 0.0

    readers = sorted({str(i.fspath): cost(i) for i in items if SHARED & set(getattr(i, "fixturenames", ()))}.items(),
                     key=lambda pair: pair[1])
    first = readers[0][0] if readers else None

    def parallel_order(item: pytest.Item) -> tuple[int, float]:
        if tier(item) != TIERS.index("e2e"):
            return (3, tier(item))
        if str(item.fspath) == first:
            return (0, 0)
        return (2 if str(item.fspath) in dict(readers) else 1, cost(item))

    items.sort(key=parallel_order)


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
    """An untrained CoroNet at 71 px (on the suite's small backbone) with the train stage's run.json beside it."""
    import keras

    from coronet.files import sha256_file
    from coronet.model.network import build_model
    from coronet.records import ModelContract, RunRecord, TrainingData

    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("model")
    backbone = TINY["train.backbone"]
    build_model(CLASSES, 71, "none", backbone_name=backbone).save(folder / "coronet.keras")
    RunRecord(run_id=None, experiment="coronet", tracking_uri="", tracking_errors=[],
              train={**TRAIN, "backbone": backbone}, seed=0, precision="float32", throughput=None, model=ModelContract(
                  CLASSES, {"covid": ["covid"], "normal": ["normal"], "pneumonia": CLASSES[2:]}, "covid", 71, None, 96,
                  "stretch", sha256_file(folder / "coronet.keras"), len(CLASSES), backbone),
              trained_on=TrainingData("synthetic", {"covid": 1, "kermany": 3}, 71, None, 1)).sealed().write(
                  folder / "run.json")
    return folder / "coronet.keras"


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    server = FileServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never through a proxy


def have_postgres() -> bool:
    """Debian's postgresql is installed (.ci/run installs it; a developer's machine may lack it)."""
    from coronet.tracking import team_server

    try:
        team_server.pg_binary("initdb")
    except Exception:
        return False
    return True


HAVE_POSTGRES = have_postgres()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(command: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None,
                 timeout: float = 120, cwd: Path | None = None) -> subprocess.Popen:
    """Starts a server of the venv in its own session, its output in ``log`` (a pipe that fills would
    block it), and waits until ``ready_url`` answers; fails with the log's tail if it dies or never does."""
    process = subprocess.Popen(command, env={**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
                                             **(env or {})},
                               stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
    wait_until_up(ready_url, process, log, timeout)
    return process


def wait_until_up(ready_url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Waits until ``ready_url`` answers; fails with the log's tail if ``process`` dies or it never does."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            with LOOPBACK.open(ready_url, timeout=2):
                return
        except OSError:
            assert time.monotonic() < deadline, f"{process.args[0]} did not come up:\n{log.read_text()[-3000:]}"
            time.sleep(1)


def mlflow_job_runners(process: subprocess.Popen) -> list[str]:
    """The command lines of MLflow's GenAI job runner and its Huey consumers among ``process``'s descendants."""
    import psutil

    found = [" ".join(child.cmdline()) for child in psutil.Process(process.pid).children(recursive=True)]
    return [line for line in found if "huey" in line or "jobs._job_runner" in line]


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True)
    return [p for p in out.stdout.decode().split("\0") if p and (ROOT / p).is_file()]


# What a run leaves in the checkout for the user to commit (`make demo` applies its experiment): never a test's.
RESULTS = {"dvc.lock", "metrics/metrics.json", "metrics/data.json"}


def make_project(dest: Path, overrides: dict[str, object] | None = None) -> Path:
    """A copy of this project's files (as git sees them, less a run's results) in a new git repo, params
    overridden."""
    for rel in (rel for rel in tracked_files() if rel not in RESULTS):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    if overrides:
        set_params(dest, overrides)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "baseline")
    return dest


def overridden(params: dict, overrides: dict[str, object]) -> dict:
    """``params`` with dotted keys set (``{"merge.controls.role": "off"}``), in place."""
    for dotted, value in overrides.items():
        node = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return params


def set_params(project: Path, overrides: dict[str, object]) -> None:
    path = project / "params.yaml"
    path.write_text(yaml.safe_dump(overridden(yaml.safe_load(path.read_text()), overrides), sort_keys=False))


def make_dicom(pixels: np.ndarray | None, photometric: str = "MONOCHROME2", syntax: str | None = None,
               **attrs: object) -> bytes:
    """A DICOM file (16-bit, 12 stored) of ``pixels``, with any other tags given."""
    import io

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = pixels.astype("<u2").tobytes()
    for key, value in attrs.items():
        setattr(ds, key, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


RAMP = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (48, 1))  # 64 x 48: big enough to classify


def write_twins(folder: Path, seed: int, images_per_class: int, size: int, controls_per_finding: int = 2) -> None:
    """Every source's synthetic twin under its upstream file name in ``folder`` (a mirror)."""
    from coronet.data import sources
    from coronet.params import DownloadParams, SyntheticParams

    syn = SyntheticParams(seed, images_per_class, size, controls_per_finding)
    for name, archive in DownloadParams.parse(params_with()).archives.items():
        sources.get(name).write_synthetic(folder / archive.filename, syn, CLASSES)


def params_with(overrides: dict[str, object] | None = None):
    """The repository's params.yaml with ``overrides``, as the stages read it (a Section)."""
    from coronet.params import Section

    return Section(overridden(yaml.safe_load((ROOT / "params.yaml").read_text()), overrides or {}))


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
    "download.synthetic.controls_per_finding": 2,
    "resize.size": 96,
    # The suite's runs test plumbing, not learning: the small backbone trains ten times faster and saves a model
    # a seventh the size (benchmarks/backbones.py); make demo runs the paper's Xception end to end.
    "train.backbone": "mobilenet_v2",
    "train.image_size": 71,
    "train.weights": "none",
    "train.epochs": 2,
    "train.learning_rate": 0.001,
    "train.bn_momentum": 0.9,
    "train.recalibrate_bn": True,
    "train.checkpoint_every_s": 0,  # every epoch of seconds saved: the resume tests interrupt after the first
    "evaluate.bootstrap_resamples": 100,
    "evaluate.gradcam_per_class": 1,
}
CLASSES = ClassScheme.parse(load_params(ROOT / "params.yaml")).classes  # the suite follows params, never a copy
TRAIN = TrainParams.parse(load_params(ROOT / "params.yaml")).as_dict()  # as run.json records them


@dataclass(frozen=True)
class Pipeline:
    """A finished project: its folder, the environment its runs need (the MLflow store) and the run's output."""

    project: Path
    env: dict[str, str]
    result: subprocess.CompletedProcess[str]

    @property
    def store(self) -> str:
        return self.env["MLFLOW_TRACKING_URI"]


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> Pipeline:
    """The suite's one tiny pipeline: `dvc repro` of all seven stages, committed as the baseline. Read-only:
    a test that changes a project works on :func:`pipeline_copy`.

    Built once per session, whichever worker asks first (pytest-xdist's documented pattern: a lock file in
    the folder all workers' temporary folders share); the others wait for it and read the same run."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    shared = tmp_path_factory.getbasetemp().parent if worker else tmp_path_factory.getbasetemp()
    root, done = shared / "pipeline", shared / "pipeline.json"
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    with open(shared / "pipeline.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.is_file():
            try:
                project = make_project(root / "repo", TINY)
                result = run_tool(project, "dvc", "repro", env=env)
                git(project, "add", "-A")
                git(project, "commit", "-qm", "results")
                outcome = {"stdout": result.stdout, "stderr": result.stderr, "failure": ""}
            except AssertionError as exc:  # said once, to every worker that reads the run
                outcome = {"stdout": "", "stderr": "", "failure": str(exc)}
            done.write_text(json.dumps(outcome))
    outcome = json.loads(done.read_text())
    if outcome["failure"]:
        pytest.fail(f"the shared pipeline run failed: {outcome['failure']}", pytrace=False)
    result = subprocess.CompletedProcess(["dvc", "repro"], 0, outcome["stdout"], outcome["stderr"])
    return Pipeline(root / "repo", env, result)


@pytest.fixture
def pipeline_copy(pipeline, tmp_path) -> Pipeline:
    """A private copy of the finished pipeline: git history, DVC cache and its MLflow store (the artifacts
    too, the store's absolute paths moved to the copy). Its stages run the copy's own code."""
    root = tmp_path / "copy"
    shutil.copytree(pipeline.project.parent, root, symlinks=True)
    relocate_store(root / "mlflow.db", str(pipeline.project.parent), str(root))
    project = root / pipeline.project.name
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "PYTHONPATH": str(project / "src")}
    return Pipeline(project, env, pipeline.result)


def project_copy(pipeline: Pipeline, dest: Path, overrides: dict[str, object] | None = None) -> Path:
    """The shared run's project alone (git history, outputs, DVC cache and run cache; not its MLflow store) at
    ``dest``, with ``overrides`` committed: its data stages are then cached, and what the overrides change reruns."""
    shutil.copytree(pipeline.project, dest, symlinks=True)
    if overrides:
        set_params(dest, overrides)
        git(dest, "commit", "-qam", "params", "--allow-empty")  # overrides may equal the run's params
    return dest


def relocate_store(db: Path, old: str, new: str) -> None:
    """Rewrites every path in a copied SQLite MLflow store from ``old`` to ``new`` (artifact locations are
    stored absolute), so the copy never writes into the original's artifacts."""
    import sqlite3

    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for _, column, kind, *_ in con.execute(f'PRAGMA table_info("{table}")').fetchall():
                if kind.upper().startswith(("TEXT", "VARCHAR")):
                    # names from the store's own schema, values as parameters
                    con.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?)', (old, new))  # noqa: S608


def in_process(project: Path, stage: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
               ) -> tuple[int, str, str]:
    """Runs a stage script that imports no TensorFlow in this process, as DVC would (from the project's
    root): (exit code, stdout, stderr). Costs milliseconds where a subprocess costs seconds of imports."""
    import runpy

    monkeypatch.chdir(project)
    capsys.readouterr()
    try:
        runpy.run_path(str(project / "stages" / f"{stage}.py"), run_name="__main__")
        code = 0
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def noise(shape: tuple[int, int] = (64, 64), seed: int = 0) -> np.ndarray:
    """An image the input checks accept (not uniform, big enough), unlike a flat test pattern."""
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


def encoded(image: np.ndarray | Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    """``image`` (a pixel array or a PIL image) as the bytes of an image file."""
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def user_error(result) -> str:
    """The one line a user sees for a failure they caused; fails the test on a traceback."""
    assert result.returncode == 1, (result.stdout[-2000:], result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


@pytest.fixture
def stage(monkeypatch, capsys):
    """Runs a stage script in this process, as DVC would (its exit code, stdout and stderr): the same code
    path as a subprocess without paying for one."""
    import subprocess

    def run(project: Path, name: str) -> subprocess.CompletedProcess[str]:
        code, out, err = in_process(project, name, monkeypatch, capsys)
        return subprocess.CompletedProcess([name], code, out, err)

    return run
