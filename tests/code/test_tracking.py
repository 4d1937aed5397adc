"""Code tier: where MLflow runs and artifacts go, and tracking failures that never stop training."""

from __future__ import annotations

import contextlib

import mlflow
import pytest

from coronet.tracking import store
from coronet.tracking.run import PipelineRun
from coronet.tracking.store import TrackingConfigError


def test_default_store_is_the_real_repository_under_dvc_temp_runs(tmp_path, monkeypatch):
    real, copy = tmp_path / "repo", tmp_path / "repo/.dvc/tmp/exps/standalone/tmp123"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(real))
    assert store.shown_uri() == f"sqlite:///{real.resolve() / 'mlflow.db'}"
    assert store.tracking_uri().endswith(f"?timeout={store.SQLITE_BUSY_TIMEOUT_S}")  # queued writers wait
    experiment = mlflow.get_experiment(store.configure("coronet-test"))
    assert experiment.artifact_location == (real.resolve() / "mlartifacts").as_uri()
    assert store.configure("coronet-test") == experiment.experiment_id  # found, not created again
    # The UI opens it on its runs (the training view), and MLflow's "Default", pointing into the temporary
    # copy, is gone (deleted, so the UI does not list it).
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert mlflow.MlflowClient().get_experiment("0").lifecycle_stage == "deleted"


def test_explicit_tracking_uri_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/elsewhere.db")
    assert store.shown_uri() == f"sqlite:///{tmp_path}/elsewhere.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert store.tracking_uri() == "http://127.0.0.1:5000"


def test_a_read_only_store_is_a_configuration_error_in_one_line(monkeypatch, tmp_path, capsys):
    """A read-only mlflow.db gave ~190 lines of SQLAlchemy tracebacks, a warning that
    named the wrong cause, and exit 0. SQLite's own read-only mode makes the store read-only for root too."""
    db = tmp_path / "mlflow.db"
    monkeypatch.chdir(tmp_path)  # MLflow makes the folder of a `file:` database path relative to the working directory
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    store.configure("coronet-test")  # a store with the experiment in it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///file:{db}?mode=ro&uri=true")
    run = PipelineRun("coronet-test")
    capsys.readouterr()
    with pytest.raises(TrackingConfigError) as info:
        run.start()
    message = str(info.value)
    assert "is read-only" in message and "MLFLOW_TRACKING_URI" in message and "\n" not in message
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err and "sqlalchemy" not in err.lower()


def test_a_failing_store_costs_one_warning_and_nothing_after(capsys):
    """The first failed MLflow call is reported once; later calls are skipped, not retried one by one."""
    run = PipelineRun("coronet-test")
    calls = []

    def down(*args):
        calls.append(args)
        raise ConnectionError("tracking server down\nwith a long body")

    assert run.call("log metrics", down, 1) is None
    assert run.call("log metrics", down, 2) is None and run.call("log artifact", down, 3) is None
    assert calls == [(1,)]
    assert run.errors == ["MLflow log metrics failed: ConnectionError: tracking server down"]
    out = capsys.readouterr().out
    assert out.count("warning:") == 1 and "goes on without MLflow" in out


def test_mlflow_http_client_waits_seconds_not_minutes(monkeypatch, tmp_path):
    for key in store.HTTP_SETTINGS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/store.db")
    store.configure("coronet-test")
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    retries, factor = MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(), MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get()
    assert sum(factor * 2**i for i in range(retries)) <= 5 and MLFLOW_HTTP_REQUEST_TIMEOUT.get() <= 10


@pytest.fixture(autouse=True)
def _reset_mlflow_uri():
    yield
    mlflow.set_tracking_uri(None)


RUN_AT = """
import sys, time
from coronet.tracking.run import PipelineRun
start = float(sys.argv[1])
time.sleep(max(0.0, start - time.time()))  # both processes open the fresh store at the same moment
run = PipelineRun("coronet")
run.start(run_name=sys.argv[2])
run.log_params({"who": sys.argv[2]})
run.end()
print(run.run_id, "|".join(run.errors))
"""


def test_two_stages_starting_together_on_a_fresh_store_both_track(tmp_path):
    """Two experiments starting at once on a store that did not exist yet both ran MLflow's schema
    migration; one failed ("duplicate column name: step") and trained without MLflow."""
    import subprocess
    import sys
    import time

    from conftest import VENV_BIN

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": uri, "PATH": str(VENV_BIN), "MLFLOW_DISABLE_TELEMETRY": "true"}
    start = time.time() + 8  # both interpreters have imported MLflow by then
    runs = [subprocess.Popen([sys.executable, "-c", RUN_AT, str(start), name], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for name in ("first", "second")]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err[-2000:] for _, err in outputs]
    ids = [out.split()[0] for out, _ in outputs]
    assert all(len(out.split()) == 1 for out, _ in outputs), outputs  # no MLflow errors recorded
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    finished = {client.get_run(i).data.params["who"]: client.get_run(i).info.status for i in ids}
    assert finished == {"first": "FINISHED", "second": "FINISHED"}
    mlflow.set_tracking_uri(None)


def test_a_store_locked_past_its_busy_timeout_stops_a_stage_s_setup_at_once(tmp_path):
    """MLflow retries opening a locked store ten times, each after the busy timeout and a growing pause (77 s
    with timeout=2): a stage's setup says "locked" after one timeout instead, and goes on without MLflow; the
    page and `coronet ui` still leave the waiting to MLflow."""
    import sqlite3

    from coronet.tracking.store import busy_timeout, check_store, explain

    db = tmp_path / "mlflow.db"
    with contextlib.closing(sqlite3.connect(db)) as made:
        made.executescript("CREATE TABLE alembic_version (version_num TEXT); CREATE TABLE experiments (id INT);")
    uri = f"sqlite:///{db}?timeout=0.5"
    assert busy_timeout(uri) == 0.5 and busy_timeout(f"sqlite:///{db}") == 60
    holder = sqlite3.connect(db)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the store
    try:
        check_store(uri)  # locked_ok: nothing raised
        with pytest.raises(sqlite3.OperationalError) as raised:
            check_store(uri, locked_ok=False)
        assert explain(raised.value) == "the tracking store is locked by another process"
    finally:
        holder.rollback()
        holder.close()
    check_store(uri, locked_ok=False)  # free again: no error
