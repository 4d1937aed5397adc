"""End to end: the package stage on copies of the shared run: a missing run, a locked or read-only
store, a record that does not describe the model."""

from __future__ import annotations

import json

import pytest

from conftest import (
    run_tool,
)

pytestmark = pytest.mark.cost(160)  # seconds in make test (2 cores): the slowest files start first


def test_package_survives_a_missing_run_and_a_locked_store_and_refuses_a_read_only_one(pipeline_copy):
    """Packaging never fails over an outage (it says what it did, and a rerun on the same model registers no
    new version); a read-only store is the user's to fix: one error line."""
    import sqlite3

    import mlflow

    project, env = pipeline_copy.project, pipeline_copy.env
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    before = len(client.search_model_versions("name = 'coronet'"))
    again = run_tool(project, "python", "stages/package.py", env=env)
    assert "registered coronet version" in again.stdout
    assert len(client.search_model_versions("name = 'coronet'")) == before  # the same model, the same version

    run_json = project / "models/run.json"
    original = run_json.read_text()
    run_json.write_text(original.replace(json.loads(original)["run_id"], "0" * 32))
    gone = run_tool(project, "python", "stages/package.py", env=env)
    assert "cannot be resumed" in gone.stdout and "logged to the new run" in gone.stdout
    run_json.write_text(original)

    lock = sqlite3.connect(env["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///"), timeout=1)
    lock.execute("BEGIN EXCLUSIVE")  # another process holds the store
    try:
        locked = run_tool(project, "python", "stages/package.py",
                          env={"MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"] + "?timeout=2"})
    finally:
        lock.rollback()
        lock.close()
    assert locked.stdout.count("warning:") == 1 and "goes on without MLflow" in locked.stdout
    assert "locked" in locked.stdout and json.loads((project / "models/package.json").read_text())["errors"]

    store = env["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")
    read_only = run_tool(project, "python", "stages/package.py", check=False,
                         env={"MLFLOW_TRACKING_URI": f"sqlite:///file:{store}?mode=ro&uri=true"})
    assert read_only.returncode == 1 and "Traceback" not in read_only.stderr and "sqlalchemy" not in read_only.stderr
    (line,) = read_only.stderr.strip().splitlines()
    assert line.startswith("error: ") and "is read-only" in line
    mlflow.set_tracking_uri(None)


def test_package_refuses_a_record_that_does_not_describe_the_model(pipeline_copy):
    """A 3-class run.json beside the 4-output model was packaged and registered as
    @candidate (exit 0), and `predict --model-uri` on it then crashed."""
    import mlflow

    project, env = pipeline_copy.project, pipeline_copy.env
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    before = len(mlflow.MlflowClient().search_model_versions("name = 'coronet'"))
    record = json.loads((project / "models/run.json").read_text())
    record["model"]["classes"] = record["model"]["classes"][:3]
    (project / "models/run.json").write_text(json.dumps(record))
    done = run_tool(project, "python", "stages/package.py", env=env, check=False)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 1 and len(errors) == 1 and "Traceback" not in done.stderr
    assert "models/coronet.keras and models/run.json do not belong together" in errors[0]
    assert len(mlflow.MlflowClient().search_model_versions("name = 'coronet'")) == before
    mlflow.set_tracking_uri(None)
