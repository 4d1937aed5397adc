"""Code tier: where MLflow runs and artifacts go, and tracking failures that never stop training."""

from __future__ import annotations

import mlflow
import pytest

from coronet import tracking


def test_default_store_is_the_real_repository_under_dvc_temp_runs(tmp_path, monkeypatch):
    real, copy = tmp_path / "repo", tmp_path / "repo/.dvc/tmp/exps/standalone/tmp123"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(real))
    assert tracking.tracking_uri() == f"sqlite:///{real.resolve() / 'mlflow.db'}"
    experiment = mlflow.get_experiment(tracking.configure("coronet-test"))
    assert experiment.artifact_location == (real.resolve() / "mlartifacts").as_uri()
    assert tracking.configure("coronet-test") == experiment.experiment_id  # found, not created again


def test_explicit_tracking_uri_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/elsewhere.db")
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path}/elsewhere.db"


def test_a_failing_store_costs_one_warning_and_nothing_after(capsys):
    """The first failed MLflow call is reported once; later calls are skipped, not retried one by one."""
    run = tracking.PipelineRun("coronet-test")
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
    for key in tracking.HTTP_SETTINGS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/store.db")
    tracking.configure("coronet-test")
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
