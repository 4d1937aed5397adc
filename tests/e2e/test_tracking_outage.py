"""End to end: training goes on when the tracking server (`mlflow server`, as the team runs it) goes away in
the middle of a run: one warning, a few seconds of waiting, then the model is saved without MLflow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import VENV_BIN, free_port, project_copy, stop_server, wait_until_up
from coronet.tracking import team_server

pytestmark = pytest.mark.cost(50)  # seconds in make test (2 cores): the slowest files start first


def test_training_finishes_when_the_tracking_server_stops_mid_run(pipeline, tmp_path):
    """One warning, a few seconds of waiting, then training goes on without MLflow and saves the model."""
    port, log = free_port(), tmp_path / "server.log"
    process = team_server.mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts", port, log)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/health", process, log, timeout=180)
    try:
        project = project_copy(pipeline, tmp_path / "repo")  # the shared run's data and params: two epochs
        env = {"MLFLOW_TRACKING_URI": url}
        state = project / "models/checkpoints/state.json"
        train_log = tmp_path / "train.log"
        train = subprocess.Popen([str(VENV_BIN / "python"), "stages/train.py"], cwd=project,
                                 env={**os.environ, **env}, stdout=train_log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not (state.is_file() and json.loads(state.read_text())["epoch"] >= 1):
            assert train.poll() is None and time.monotonic() < deadline, train_log.read_text()[-3000:]
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGKILL)  # the server goes away after the first epoch
        process.wait(timeout=30)
        stopped = time.monotonic()
        assert train.wait(timeout=600) == 0, train_log.read_text()[-3000:]
        rest = time.monotonic() - stopped
        output = train_log.read_text()
        assert output.count("warning: MLflow") == 1 and "goes on without MLflow" in output
        run = json.loads((project / "models/run.json").read_text())
        assert len(run["tracking_errors"]) == 1 and (project / "models/coronet.keras").is_file()
        # One epoch of a 71 px model on a few dozen images take well under a minute here; MLflow's default
        # retries (7, exponential backoff) would have cost minutes on the first failed call alone.
        assert rest < 120, f"{rest:.0f} s after the server stopped"
    finally:
        stop_server(process)  # killed above unless the test failed first
