"""End to end: a team's tracking server as MLflow's self-hosting guide lays it out: `mlflow server` on a real
PostgreSQL (Debian's, `initdb` in a temporary folder, a Unix socket only) with the artifact proxy. A queued
experiment runs in one checkout while a colleague runs the pipeline in another, both against it at once (two
queued experiments side by side, `-j 2`, are the study's test). `make server` and its signals are
tests/e2e/test_make_server.py, the server stopping mid-training tests/e2e/test_tracking_outage.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import (
    HAVE_POSTGRES,
    VENV_BIN,
    free_port,
    git,
    mlflow_job_runners,
    project_copy,
    run_tool,
    set_params,
    stop_server,
    wait_until_up,
)
from coronet.experiments import study
from coronet.tracking import team_server

pytestmark = [pytest.mark.cost(330),
              pytest.mark.skipif(not HAVE_POSTGRES, reason="PostgreSQL (Debian's postgresql) is not installed")]


@pytest.fixture(scope="module")
def database():
    # Not under pytest's own temporary folders: those are closed to other users, and PostgreSQL runs as one.
    folder = Path(tempfile.mkdtemp(prefix="coronet-pg-"))
    postgres = team_server.Postgres(folder).start()
    yield postgres
    postgres.stop()
    shutil.rmtree(folder, ignore_errors=True)


def server(database, tmp_path) -> tuple[str, subprocess.Popen]:
    port, log = free_port(), tmp_path / f"server-{time.monotonic_ns()}.log"
    process = team_server.mlflow_server(database.uri, tmp_path / "artifacts", port, log, database.client_env)
    wait_until_up(f"http://127.0.0.1:{port}/health", process, log, timeout=180)
    return f"http://127.0.0.1:{port}", process


def test_a_queued_experiment_and_a_colleagues_pipeline_at_once_on_postgresql(database, pipeline, tmp_path):
    """Both checkouts start from the shared run (its data stages come from DVC's run cache, so two trainings
    of one epoch, at the same time, are the cost)."""
    import mlflow

    url, process = server(database, tmp_path)
    env = {"MLFLOW_TRACKING_URI": url}
    try:
        assert not mlflow_job_runners(process)  # six Huey consumers, ~26 s of CPU at every start: not ours to pay
        # one stress transform: the full set is test_pipeline's, on the shared run
        ours = project_copy(pipeline, tmp_path / "ours", {"train.epochs": 1,
                                                          "evaluate.stress.transforms": {"frame_median": [0.2]}})
        colleague = tmp_path / "colleague"
        git(tmp_path, "clone", "-q", str(ours), str(colleague))
        run_tool(colleague, "dvc", "cache", "dir", "--local", str(ours / ".dvc/cache"))  # a team's shared cache
        set_params(colleague, {"train.learning_rate": 0.003})
        run_tool(ours, "dvc", "exp", "run", "--queue", "-n", "team-lr", "-S", "train.learning_rate=0.002", env=env)
        tool_env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", **env}
        with (tmp_path / "queue.log").open("w") as log:  # the worker inherits it: a pipe would wait for it to end
            subprocess.run([str(VENV_BIN / "dvc"), "queue", "start"], cwd=ours, env=tool_env, stdout=log,
                           stderr=subprocess.STDOUT, check=True)
        started = time.monotonic()
        repro = subprocess.Popen([str(VENV_BIN / "dvc"), "repro"], cwd=colleague, text=True, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, env=tool_env)
        # DVC's executor files say what the queue does without a `dvc queue status` process (one a second,
        # each importing DVC, took CPU from the two trainings it waited for); it is asked once at the end.
        running = False
        while not running and repro.poll() is None:  # both at once, not one after the other
            running = study.STATES.get(study.executors(ours).get("team-lr", {}).get("status", 0)) == "Running"
            time.sleep(1)
        out, _ = repro.communicate(timeout=900)
        assert running, "the queued experiment did not run while the colleague's pipeline did"
        assert repro.returncode == 0, out[-4000:]
        while study.STATES.get(study.executors(ours).get("team-lr", {}).get("status", 0)) not in study.DONE:
            assert time.monotonic() - started < 900, study.executors(ours)
            time.sleep(2)
        while True:  # the queue's own word on it
            status = run_tool(ours, "dvc", "queue", "status", env=env).stdout
            if any("team-lr" in line and ("Success" in line or "Failed" in line) for line in status.splitlines()):
                break
            assert time.monotonic() - started < 900, status
            time.sleep(5)
        assert "Stage 'resize' is cached" in out or "Stage 'resize' didn't change" in out, out[-4000:]
        assert "Failed" not in status, run_tool(ours, "dvc", "queue", "logs", "team-lr", check=False).stdout[-3000:]
        shown = json.loads(run_tool(ours, "dvc", "exp", "show", "--json", env=env).stdout)
        experiments = {e["name"]: e for commit in shown for e in (commit.get("experiments") or [])}
        assert "team-lr" in experiments

        mlflow.set_tracking_uri(url)
        client = mlflow.MlflowClient()
        experiment = client.get_experiment_by_name("coronet")
        runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
        colleague_run = client.get_run(json.loads((colleague / "models/run.json").read_text())["run_id"])
        assert "team-lr" in runs and colleague_run.info.run_name.startswith("repro-")
        for run in (runs["team-lr"], colleague_run):
            assert run.info.status == "FINISHED", run.info.run_name
            assert "test/accuracy" in run.data.metrics and "test/controls.covid_rate" in run.data.metrics
            assert [m.step for m in client.get_metric_history(run.info.run_id, "loss/val")] == [1]
            assert {d.dataset.name for d in run.inputs.dataset_inputs} == {"coronet-train", "coronet-val",
                                                                           "coronet-test"}
            assert {"figures", "metrics.json", "evidence.json", "model_card.md"} <= {
                a.path for a in client.list_artifacts(run.info.run_id)}
        assert runs["team-lr"].data.params["train.learning_rate"] == "0.002"
        versions = client.search_model_versions("name = 'coronet'")
        assert {v.run_id for v in versions} >= {runs["team-lr"].info.run_id, colleague_run.info.run_id}
        local = tmp_path / "downloaded"
        mlflow.artifacts.download_artifacts("models:/coronet@candidate", dst_path=str(local))
        assert (local / "MLmodel").is_file() and (local / "input_example.json").is_file()  # through the proxy
    finally:
        mlflow.set_tracking_uri(None)
        stop_server(process)
