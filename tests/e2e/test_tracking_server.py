"""End to end: the pipeline against a real `mlflow server` on 127.0.0.1, as a team would share runs;
then the server stops mid-training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import TINY, VENV_BIN, free_port, make_project, run_tool, start_server, stop_server


@pytest.fixture
def server(tmp_path):
    """A tracking server with its own SQLite store and artifact root, serving artifacts over HTTP."""
    port = free_port()
    process = start_server(
        [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", (tmp_path / "server-artifacts").as_uri()],
        f"http://127.0.0.1:{port}/health", tmp_path / "server.log")
    yield f"http://127.0.0.1:{port}", process
    stop_server(process)


def test_runs_metrics_artifacts_datasets_and_model_reach_a_tracking_server(server, tmp_path):
    import mlflow

    url, _ = server
    project = make_project(tmp_path / "repo", TINY)
    env = {"MLFLOW_TRACKING_URI": url}
    run_tool(project, "dvc", "repro", env=env)
    assert not (project / "mlflow.db").exists()  # nothing went to the local default store

    mlflow.set_tracking_uri(url)
    client = mlflow.MlflowClient()
    run = client.get_run(json.loads((project / "models/run.json").read_text())["run_id"])
    assert run.info.status == "FINISHED"
    assert "test/accuracy" in run.data.metrics and len(client.get_metric_history(run.info.run_id, "loss/val")) == 2
    assert {d.dataset.name for d in run.inputs.dataset_inputs} == {"coronet-train", "coronet-val", "coronet-test"}
    assert {"figures", "metrics.json", "evidence.json", "model_card.md"} <= {
        a.path for a in client.list_artifacts(run.info.run_id)}
    version = client.get_model_version_by_alias("coronet", "candidate")
    assert version.run_id == run.info.run_id
    local = tmp_path / "downloaded"
    mlflow.artifacts.download_artifacts("models:/coronet@candidate", dst_path=str(local))
    assert (local / "MLmodel").is_file() and (local / "input_example.json").is_file()
    mlflow.set_tracking_uri(None)


def test_training_finishes_when_the_server_stops_mid_run(server, tmp_path):
    """One warning, a few seconds of waiting, then training goes on without MLflow and saves the model."""
    url, process = server
    project = make_project(tmp_path / "repo", {**TINY, "train.epochs": 4})
    env = {"MLFLOW_TRACKING_URI": url}
    run_tool(project, "dvc", "repro", "split", env=env)
    state = project / "models/checkpoints/state.json"
    log = tmp_path / "train.log"
    train = subprocess.Popen([str(VENV_BIN / "python"), "stages/train.py"], cwd=project,
                             env={**os.environ, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not (state.is_file() and json.loads(state.read_text())["epoch"] >= 1):
        assert train.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the server goes away after the first epoch
    process.wait(timeout=30)
    stopped = time.monotonic()
    assert train.wait(timeout=600) == 0, log.read_text()[-3000:]
    rest = time.monotonic() - stopped
    output = log.read_text()
    assert output.count("warning: MLflow") == 1 and "goes on without MLflow" in output
    run = json.loads((project / "models/run.json").read_text())
    assert len(run["tracking_errors"]) == 1 and (project / "models/coronet.keras").is_file()
    # Three epochs of a 71 px model on a few dozen images take well under a minute here; MLflow's default
    # retries (7, exponential backoff) would have cost minutes on the first failed call alone.
    assert rest < 120, f"{rest:.0f} s after the server stopped"
