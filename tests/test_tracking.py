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


def test_tracker_retries_then_reports_without_raising(capsys):
    calls = []

    def flaky(value):
        calls.append(value)
        if len(calls) < 3:
            raise RuntimeError("database is locked")
        return value * 2

    tracker = tracking.Tracker(attempts=3, wait_s=0)
    assert tracker.call("log", flaky, 21) == 42 and len(calls) == 3 and not tracker.errors

    def down():
        raise ConnectionError("tracking server down")

    assert tracker.call("log metrics", down) is None
    assert tracker.errors == ["MLflow log metrics failed after 3 attempts: ConnectionError: tracking server down"]
    assert "warning: MLflow log metrics failed" in capsys.readouterr().out


@pytest.fixture(autouse=True)
def _reset_mlflow_uri():
    yield
    mlflow.set_tracking_uri(None)
