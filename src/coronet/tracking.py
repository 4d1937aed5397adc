"""MLflow: where runs go, and logging that survives a locked database or a server that is down."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from coronet.files import repository_root
from coronet.params import flatten

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repository_root() / DEFAULT_DB}"


def configure(experiment: str) -> str:
    """Points MLflow at the tracking store and returns the experiment id (created on first use).

    With a SQLite store, the experiment's artifacts live next to the database in ``mlartifacts/``:
    MLflow's own default is relative to the working directory, which under ``dvc exp run --temp`` is a
    copy that is deleted afterwards.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / DEFAULT_ARTIFACTS).as_uri()
    return mlflow.create_experiment(experiment, artifact_location=location)


class Tracker:
    """Calls MLflow with retries; a call that still fails is reported and remembered, never raised.

    Training must not lose its model because tracking broke: DVC keeps the model regardless.
    """

    def __init__(self, attempts: int = 3, wait_s: float = 2.0) -> None:
        self.attempts, self.wait_s = attempts, wait_s
        self.errors: list[str] = []

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        for attempt in range(1, self.attempts + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # MLflow raises many types (OperationalError, RestException, ...)
                if attempt == self.attempts:
                    message = f"MLflow {what} failed after {attempt} attempts: {type(exc).__name__}: {exc}"
                    print(f"warning: {message}")
                    self.errors.append(message)
                    return None
                time.sleep(self.wait_s * attempt)
        return None


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def data_lineage(lock_path: Path = Path("dvc.lock"), sources_path: Path = Path("data/raw/sources.json")
                 ) -> tuple[dict[str, str], dict[str, Any]]:
    """(tags, params) describing the data a run used.

    Tags: the hash of every output of the data stages in dvc.lock and each archive's sha256.
    Params: the params the data stages ran with, as dvc.lock recorded them (DVC writes each stage's
    entry as it finishes, so train sees its upstream stages).
    """
    import json

    tags: dict[str, str] = {}
    params: dict[str, Any] = {}
    if lock_path.is_file():
        stages = (yaml.safe_load(lock_path.read_text()) or {}).get("stages", {})
        for name in ("download", "merge", "resize", "split"):
            stage = stages.get(name, {})
            for out in stage.get("outs", []):
                tags[f"dvc.{out['path']}"] = str(out.get("md5") or out.get("hash") or "")
            for values in stage.get("params", {}).values():
                params.update(flatten({k: v for k, v in values.items() if k.split(".")[0] == name}))
    if sources_path.is_file():
        for name, record in json.loads(sources_path.read_text()).get("archives", {}).items():
            tags[f"data.{name}.sha256"] = record["sha256"]
            tags[f"data.{name}.url"] = record["url"]
    return tags, params
