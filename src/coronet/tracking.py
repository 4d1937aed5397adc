"""MLflow in one place: where runs go, the pipeline's run (which survives a locked database or a server
that is down), and what a run records about its data."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from coronet import paths
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
    for key, value in {**HTTP_SETTINGS, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}.items():
        os.environ.setdefault(key, value)
    # A line per HTTP retry, and MLflow's INFO chatter; our stages print what a user needs to know.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
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


# MLflow's HTTP client retries 7 times with exponential backoff and waits up to 120 s a request by default:
# with the tracking server down, every epoch would stall for minutes. A few seconds, then one warning.
HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
SYSTEM_METRICS_INTERVAL_S = 10
KERAS_DIGEST_TAG = "coronet.keras_sha256"  # on a logged model: the sha256 of the Keras file inside


class PipelineRun:
    """The pipeline's one MLflow run: train starts it (or resumes it after an interruption) and logs
    params, datasets and per-epoch curves; evaluate adds nothing; package logs the test metrics, the
    evidence, the servable model and its registry entry.

    Tracking never fails a stage (DVC keeps every output regardless): the first MLflow call that fails
    prints one warning, and the rest of the stage runs without MLflow. The failures are kept in
    ``errors`` for models/run.json.
    """

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.errors: list[str] = []
        self._monitor: Any = None

    @property
    def active(self) -> bool:
        return self.run_id is not None and not self.errors

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(...)``, or None once MLflow has failed in this stage (then said so, once)."""
        if self.errors:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # MLflow raises many types (OperationalError, RestException, ...)
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            self.errors.append(f"MLflow {what} failed: {type(exc).__name__}: {reason}")
            print(f"warning: {self.errors[-1]} ({tracking_uri()}); the stage goes on without MLflow and its "
                  "outputs are kept")
            self._stop_monitor()
            return None

    def start(self, run_id: str | None = None, run_name: str | None = None, system_metrics: bool = False) -> bool:
        """Opens the run ``run_id`` (resume) or a new one; True if a run is open."""
        import mlflow

        experiment_id = self.experiment_id = self.call("setup", configure, self.experiment)
        if experiment_id is None:
            return False
        run = self.call("start run", mlflow.start_run, run_id=run_id, experiment_id=experiment_id, run_name=run_name)
        self.run_id = run.info.run_id if run else None
        if run and system_metrics:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            # It stops itself when the store goes away, with a warning of its own; ours says it already.
            logging.getLogger("mlflow.system_metrics").setLevel(logging.CRITICAL)

            self._monitor = SystemMetricsMonitor(self.run_id, SYSTEM_METRICS_INTERVAL_S, resume_logging=bool(run_id))
            self._monitor.start()
        return self.active

    def resume(self, run_id: str | None) -> bool:
        """Reopens the train stage's run; if it is gone, opens a new one and says so."""
        import mlflow

        self.experiment_id = self.call("setup", configure, self.experiment)
        if self.experiment_id is None:
            return False
        if run_id:
            try:
                self.run_id = mlflow.start_run(run_id=run_id).info.run_id
                return True
            except Exception as exc:  # gone: deleted, or another store
                reason = type(exc).__name__
        else:
            reason = "none recorded"
        if self.start(run_name="evaluation"):
            print(f"warning: the train stage's MLflow run {run_id or ''} cannot be resumed ({reason}); logged to the "
                  f"new run {self.run_id}")
        return self.active

    def log_training(self, params: dict[str, Any], frames: dict[str, Any], tags: dict[str, str]) -> None:
        """What a run trains on: the train and resize params with the data stages' (from dvc.lock), tags
        (``tags``, the data's hashes, git commit, split sizes), and one MLflow dataset per split."""
        import mlflow

        # The data's hashes and archive checksums travel on the datasets (their digest and tags), not as run
        # tags: the run page would show a dozen truncated hashes.
        hashes, lineage_params = data_lineage()
        self.call("log params", mlflow.log_params, {
            **flatten({"train": params["train"], "resize": params["resize"]}), "seed": params["seed"],
            "classes": ",".join(params["classes"]), **lineage_params})
        self.call("set tags", mlflow.set_tags, {
            **tags, "mlflow.source.git.commit": git_commit(),
            "dvc.exp_name": os.environ.get("DVC_EXP_NAME", ""), **{f"images.{k}": len(v) for k, v in frames.items()}})
        for context, (dataset, dataset_tags) in split_datasets(frames, hashes).items():
            self.call("log dataset", mlflow.log_input, dataset, context=context, tags=dataset_tags)

    def log_epoch(self, epoch: int, logs: dict[str, float], seconds: float) -> None:
        """One epoch's curves as ``<metric>/train`` and ``<metric>/val``: the MLflow UI groups metrics by the
        part before the slash, so each metric's training and validation charts sit side by side."""
        import mlflow

        values = {f"{key.removeprefix('val_')}/{'val' if key.startswith('val_') else 'train'}": float(value)
                  for key, value in logs.items()}
        self.call("log metrics", mlflow.log_metrics, {**values, "epoch_seconds": seconds}, step=epoch)

    def log_metrics(self, values: dict[str, float], **kwargs: Any) -> None:
        import mlflow

        self.call("log metrics", mlflow.log_metrics, values, **kwargs)

    def log_artifacts(self, files: list[Path], folders: dict[str, Path] | None = None) -> None:
        import mlflow

        for path in files:
            self.call("log artifact", mlflow.log_artifact, str(path))
        for name, folder in (folders or {}).items():
            self.call("log artifacts", mlflow.log_artifacts, str(folder), name)

    def log_model(self, model_path: Path, log: Callable[[dict[str, str]], Any]) -> Any:
        """The run's logged model of the Keras file ``model_path``: ``log(tags)`` logs it (package passes
        :func:`coronet.serving.log_pyfunc`). If the run already holds a model logged from the same file
        (evaluation rerun for a plot or a formula), that one is returned instead of a copy."""
        import mlflow

        from coronet.files import sha256_file

        digest = sha256_file(model_path)
        logged = self.call("search models", mlflow.search_logged_models, experiment_ids=[self.experiment_id],
                           filter_string=f"source_run_id = '{self.run_id}'", output_format="list") or []
        same = [m for m in logged if (m.tags or {}).get(KERAS_DIGEST_TAG) == digest]
        if same:
            return same[0]
        info = self.call("log model", log, {KERAS_DIGEST_TAG: digest})
        return self.call("find model", mlflow.get_logged_model, info.model_id) if info else None

    def register(self, model: Any, name: str) -> str | None:
        """Registers the logged model under ``name`` with the alias ``candidate``; a model registered
        before (a rerun) keeps its version. Returns the version."""
        import mlflow

        client = mlflow.MlflowClient()
        versions = self.call("search versions", client.search_model_versions,
                             f"name = '{name}' and run_id = '{self.run_id}'") or []
        version = next((v for v in versions if v.source == f"models:/{model.model_id}"), None)
        if version is None:
            version = self.call("register model", mlflow.register_model, f"models:/{model.model_id}", name)
        if version is None:
            return None
        self.call("set alias", client.set_registered_model_alias, name, "candidate", version.version)
        return str(version.version)

    def end(self) -> None:
        import mlflow

        self._stop_monitor()
        if self.active:
            self.call("end run", mlflow.end_run)

    def _stop_monitor(self) -> None:
        if self._monitor is not None:
            monitor, self._monitor = self._monitor, None
            monitor.finish()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def data_lineage(lock_path: Path = Path("dvc.lock")) -> tuple[dict[str, str], dict[str, Any]]:
    """(hashes, params) of the data stages as dvc.lock recorded them: DVC's hash of each output by path,
    and the params they ran with (DVC writes each stage's entry as it finishes, so train sees them)."""
    hashes: dict[str, str] = {}
    params: dict[str, Any] = {}
    if lock_path.is_file():
        stages = (yaml.safe_load(lock_path.read_text()) or {}).get("stages", {})
        for name in ("download", "merge", "resize", "split"):
            stage = stages.get(name, {})
            for out in stage.get("outs", []):
                hashes[out["path"]] = str(out.get("md5") or out.get("hash") or "")
            for values in stage.get("params", {}).values():
                params.update(flatten({k: v for k, v in values.items() if k.split(".")[0] == name}))
    return hashes, params


ROLES = {"train": "training", "val": "validation", "test": "testing"}


def split_datasets(frames: dict[str, Any], hashes: dict[str, str], sources_path: Path = paths.SOURCES
                   ) -> dict[str, tuple[Any, dict[str, str]]]:
    """One MLflow dataset per split (context: training / validation / testing -> (dataset, tags)).

    The digest is DVC's hash of the processed images (``hashes``, from :func:`data_lineage`), so runs on
    the same data share it; the tags name the split file's hash, the sources and each archive's sha256.
    """
    import mlflow.data

    archives = json.loads(sources_path.read_text()).get("archives", {}) if sources_path.is_file() else {}
    tags = {"dvc.splits_md5": hashes.get("data/processed/splits.csv", ""),
            "sources": ",".join(sorted(archives)),
            **{f"{name}.sha256": record["sha256"] for name, record in archives.items()},
            **{f"{name}.url": record["url"] for name, record in archives.items()}}
    digest = hashes.get("data/processed/images", "")[:36] or None  # MLflow keeps 36 characters
    with warnings.catch_warnings():  # MLflow registers its local-file source twice and warns that it is ambiguous
        warnings.simplefilter("ignore", UserWarning)
        return {ROLES[split]: (mlflow.data.from_pandas(frame[["id", "label", "source", "patient_id", "path"]],
                                                       source="data/processed/images", targets="label",
                                                       name=f"coronet-{split}", digest=digest), tags)
                for split, frame in frames.items()}
