"""MLflow in one place: where runs go, and the pipeline's run, whose calls never crash a stage.

:class:`PipelineRun` is a run plus safe calls: the first MLflow call that fails prints one warning
naming the cause and the rest of the stage runs without MLflow. What is logged is the stages' choice;
the helpers below it (datasets, the servable model, the registry) are mechanisms they call.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from coronet.errors import UserError
from coronet.files import repository_root

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
# SQLite lets one writer in at a time and makes the others wait this long (Python's default: 5 s) before
# "database is locked"; queued experiments (dvc queue start -j N) write to one file side by side.
SQLITE_BUSY_TIMEOUT_S = 60
# MLflow's HTTP client retries 7 times with exponential backoff and waits up to 120 s a request by default:
# with the tracking server down, every epoch would stall for minutes. A few seconds, then one warning.
HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
SYSTEM_METRICS_INTERVAL_S = 10
SERVED_DIGEST_TAG = "coronet.served_sha256"  # on a logged model: what it serves (model, config, code)
# The MLflow 3 UI opens an experiment of this kind on its runs and charts (the training view); without
# the tag it guesses, and a new experiment opens on the GenAI overview.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


class TrackingConfigError(UserError):
    """The tracking store cannot work as configured (read-only, or not a store at all): a user's fix, not an outage."""


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else ``mlflow.db`` in the repository; a SQLite store gets a busy timeout."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repository_root() / DEFAULT_DB}"
    if uri.startswith("sqlite:") and "timeout=" not in uri:
        uri += f"{'&' if '?' in uri else '?'}timeout={SQLITE_BUSY_TIMEOUT_S}"
    return uri


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?")[0]
    return Path(path.removeprefix("file:"))


def shown_uri(uri: str | None = None) -> str:
    """The store as people read it: without the query string our default adds."""
    uri = uri or tracking_uri()
    return uri.split("?")[0] if uri.startswith("sqlite:") else uri


def experiments_running(root: Path | None = None) -> int:
    """How many DVC experiments of this repository are running now (``dvc queue start -j N`` workers), from
    the executors' info files (``.dvc/tmp/exps/run/<id>/<id>.run``, status 2 = running)."""
    import json

    count = 0
    for info in ((root or repository_root()) / ".dvc/tmp/exps/run").glob("*/*.run"):
        try:
            count += json.loads(info.read_text()).get("status") == 2
        except (OSError, ValueError):
            continue
    return count


def note_parallel_sqlite() -> None:
    """One line when several experiments share a SQLite store: it copes (each writer waits its turn), but a
    tracking server is what parallel work wants."""
    uri = tracking_uri()
    if sqlite_file(uri) is not None and (running := experiments_running()) > 1:
        print(f"note: {running} experiments write to {shown_uri(uri)} at once; SQLite lets one writer in at a time "
              f"(each waits up to {SQLITE_BUSY_TIMEOUT_S} s); for parallel work a tracking server suits better "
              "(README: Sharing runs)")


def quiet_mlflow() -> None:
    """MLflow's INFO chatter, its database layer's tracebacks (we report the failure in one line) and a
    line per HTTP retry are not for our users."""
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    for name in ("mlflow.store.db.utils", "alembic", "sqlalchemy", "mlflow.system_metrics"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def client_settings() -> None:
    """MLflow's client as this project uses it: no telemetry, HTTP retries of seconds, not minutes, quiet."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    for key, value in {**HTTP_SETTINGS, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}.items():
        os.environ.setdefault(key, value)
    quiet_mlflow()


UNREACHABLE = ("Max retries exceeded", "Connection refused", "Failed to establish a new connection",
               "Name or service not known", "Read timed out")


def unreachable(exc: Exception) -> bool:
    """True when an MLflow call failed because the tracking server could not be reached at all."""
    return any(sign in str(exc) for sign in UNREACHABLE)


def configure(experiment: str) -> str:
    """Points MLflow at the tracking store and returns the experiment id (created on first use).

    With a SQLite store, the experiment's artifacts live next to the database in ``mlartifacts/``:
    MLflow's own default is relative to the working directory, which under ``dvc exp run --temp`` is a
    copy that is deleted afterwards (and the "Default" experiment MLflow makes there is removed).
    """
    client_settings()
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    with store_lock(uri):
        return _experiment_id(mlflow, uri, experiment)


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Holds ``<db>.lock`` while a process opens a SQLite store: the first open creates the database and runs
    MLflow's schema migration, and two experiments starting together on a fresh store would both migrate it
    (one then fails: "duplicate column name"). Other stores migrate on their server: no lock."""
    db = sqlite_file(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _experiment_id(mlflow: Any, uri: str, experiment: str) -> str:
    client = mlflow.MlflowClient()
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        if found.tags.get("mlflow.experimentKind") is None:
            client.set_experiment_tag(found.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
        return found.experiment_id
    location = None
    if (db := sqlite_file(uri)) is not None:
        location = (db.parent / DEFAULT_ARTIFACTS).as_uri()
    from mlflow.exceptions import MlflowException

    try:
        created = mlflow.create_experiment(experiment, artifact_location=location, tags=EXPERIMENT_KIND)
    except MlflowException:  # another run of the team (a queued experiment beside this one) made it first
        found = mlflow.get_experiment_by_name(experiment)
        if found is None:
            raise
        return found.experiment_id
    _drop_stray_default(client, location)
    return created


def _drop_stray_default(client: Any, ours: str | None) -> None:
    """MLflow makes a "Default" experiment with every new store, its artifacts under the working directory
    (a temporary copy under `dvc exp run --temp`): an empty one that is not ours only misleads."""
    default = client.get_experiment("0")
    if ours and default.artifact_location != ours and not client.search_runs(["0"], max_results=1):
        client.delete_experiment("0")


READ_ONLY = "the tracking store is read-only"


def explain(exc: Exception) -> str:
    """Why an MLflow call failed, in one line."""
    text = str(exc).strip()
    if "readonly database" in text or "read-only" in text:
        return READ_ONLY
    if "database is locked" in text:
        return "the tracking store is locked by another process"
    first = text.splitlines()[0][:300] if text else ""
    return re.sub(r"^\(raised as a result of Query-invoked autoflush[^)]*\)\s*", "", first) or type(exc).__name__


def _refuse_read_only(what: str, reason: str) -> None:
    if reason == READ_ONLY:
        raise TrackingConfigError(f"{shown_uri()} is read-only (MLflow {what} failed): make the database and its "
                                  "folder writable, or point MLFLOW_TRACKING_URI at a store you can write to")


class PipelineRun:
    """The pipeline's one MLflow run: train starts it (or resumes it after an interruption), package
    resumes it. Tracking never fails a stage by itself (DVC keeps every output regardless): the first
    MLflow call that fails prints one warning, and the rest of the stage runs without MLflow; the failures
    are kept in ``errors`` for the stage's record. A read-only store is a configuration error instead.
    """

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.errors: list[str] = []
        self._monitor: Any = None
        self._monitor_run = ""

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
            reason = explain(exc)
            _refuse_read_only(what, reason)
            self.errors.append(f"MLflow {what} failed: {type(exc).__name__}: {reason}")
            print(f"warning: {self.errors[-1]} ({shown_uri()}); the stage goes on without MLflow and its "
                  "outputs are kept")
            self._stop_monitor()
            return None

    def start(self, run_id: str | None = None, run_name: str | None = None, system_metrics: bool = False) -> bool:
        """Opens the run ``run_id`` (resume) or a new one; True if a run is open."""
        import mlflow

        experiment_id = self.experiment_id = self.call("setup", configure, self.experiment)
        if experiment_id is None:
            return False
        note_parallel_sqlite()
        run = self.call("start run", mlflow.start_run, run_id=run_id, experiment_id=experiment_id, run_name=run_name)
        self.run_id = run.info.run_id if run else None
        if run and system_metrics:
            self.call("system metrics", self._start_monitor, run.info.run_name, resumed=bool(run_id))
        return self.active

    def _start_monitor(self, run_name: str, resumed: bool) -> None:
        """CPU, memory and disk use, sampled into a child run ``<run>/system``: the run page lists system
        metrics before all others, so in the run itself they would push the test metrics out of sight."""
        from mlflow import MlflowClient
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        client = MlflowClient()
        found = client.search_runs([self.experiment_id], f"tags.mlflow.parentRunId = '{self.run_id}'",
                                   max_results=1) if resumed else []
        child = (found[0].info.run_id if found else client.create_run(
            self.experiment_id, run_name=f"{run_name}/system", tags={"mlflow.parentRunId": self.run_id}).info.run_id)
        client.update_run(child, "RUNNING")
        self._monitor = SystemMetricsMonitor(child, SYSTEM_METRICS_INTERVAL_S, resume_logging=bool(found))
        self._monitor.start()
        self._monitor_run = child

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
                _refuse_read_only("resume run", explain(exc))
                reason = type(exc).__name__
        else:
            reason = "none recorded"
        if self.start(run_name="evaluation"):
            print(f"warning: the train stage's MLflow run {run_id or ''} cannot be resumed ({reason}); logged to the "
                  f"new run {self.run_id}")
        return self.active

    def log_params(self, params: dict[str, Any]) -> None:
        import mlflow

        self.call("log params", mlflow.log_params, params)

    def set_tags(self, tags: dict[str, Any]) -> None:
        import mlflow

        self.call("set tags", mlflow.set_tags, tags)

    def log_metrics(self, values: dict[str, float], **kwargs: Any) -> None:
        import mlflow

        self.call("log metrics", mlflow.log_metrics, values, **kwargs)

    def log_inputs(self, datasets: dict[str, tuple[Any, dict[str, str]]]) -> None:
        """context -> (dataset, tags), as :func:`split_datasets` makes them."""
        import mlflow

        def log_input(dataset: Any, context: str, tags: dict[str, str]) -> None:
            try:
                mlflow.log_input(dataset, context=context, tags=tags)
            except Exception as exc:
                # MLflow stores a dataset check-then-insert: two runs logging the same data at once (queued
                # experiments) race on its unique key and the later insert fails; once more finds it stored.
                if not re.search(r"UniqueViolation|UNIQUE constraint failed|duplicate key", str(exc)):
                    raise
                mlflow.log_input(dataset, context=context, tags=tags)

        for context, (dataset, tags) in datasets.items():
            self.call("log dataset", log_input, dataset, context=context, tags=tags)

    def log_artifacts(self, files: list[Path], folders: dict[str, Path] | None = None) -> None:
        import mlflow

        for path in files:
            self.call("log artifact", mlflow.log_artifact, str(path))
        for name, folder in (folders or {}).items():
            self.call("log artifacts", mlflow.log_artifacts, str(folder), name)

    def end(self) -> None:
        import mlflow

        self._stop_monitor()
        if self.active:
            self.call("end run", mlflow.end_run)

    def _stop_monitor(self) -> None:
        if self._monitor is not None:
            monitor, self._monitor = self._monitor, None
            monitor.finish()
            from mlflow import MlflowClient

            self.call("system metrics", MlflowClient().set_terminated, self._monitor_run)


def epoch_curves(logs: dict[str, float], seconds: float) -> dict[str, float]:
    """One epoch's Keras logs as ``<metric>/train`` and ``<metric>/val``: the MLflow UI groups metrics by
    the part before the slash, so each metric's training and validation charts sit side by side."""
    values = {f"{key.removeprefix('val_')}/{'val' if key.startswith('val_') else 'train'}": float(value)
              for key, value in logs.items()}
    return {**values, "epoch_seconds": seconds}


ROLES = {"train": "training", "val": "validation", "test": "testing", "control": "control"}


def split_datasets(frames: dict[str, Any], hashes: dict[str, str], archives: dict[str, dict[str, Any]]
                   ) -> dict[str, tuple[Any, dict[str, str]]]:
    """One MLflow dataset per split (context: training / validation / testing -> (dataset, tags)).

    The digest is DVC's hash of the processed images (``hashes``, from :func:`coronet.lineage.data_hashes`),
    so runs on the same data share it; the tags name the split file's hash, the sources and each archive's
    sha256 and URL (``archives``: data/raw/sources.json's).
    """
    import mlflow.data

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
                for split, frame in frames.items() if len(frame)}


def servable_model(run: PipelineRun, digest: str, log: Callable[[dict[str, str]], Any]) -> Any:
    """The run's logged model that serves ``digest`` (the hash of the model file, its serving config and
    the code it runs): ``log(tags)`` logs it, unless the run already holds one of the same digest (an
    evaluation rerun for a plot or a formula), which is returned instead of a copy."""
    import mlflow

    logged = run.call("search models", mlflow.search_logged_models, experiment_ids=[run.experiment_id],
                      filter_string=f"source_run_id = '{run.run_id}'", output_format="list") or []
    same = [m for m in logged if (m.tags or {}).get(SERVED_DIGEST_TAG) == digest]
    if same:
        return same[0]
    info = run.call("log model", log, {SERVED_DIGEST_TAG: digest})
    return run.call("find model", mlflow.get_logged_model, info.model_id) if info else None


def register(run: PipelineRun, model: Any, name: str, description: str, tags: dict[str, str],
             alias: str = "candidate") -> str | None:
    """Registers the logged model under ``name`` with ``alias``, the version described (what it was trained
    on) and tagged; a model registered before (a rerun) keeps its version. Returns the version."""
    import mlflow

    client = mlflow.MlflowClient()
    versions = run.call("search versions", client.search_model_versions,
                        f"name = '{name}' and run_id = '{run.run_id}'") or []
    version = next((v for v in versions if v.source == f"models:/{model.model_id}"), None)
    if version is None:
        version = run.call("register model", mlflow.register_model, f"models:/{model.model_id}", name)
    if version is None:
        return None
    run.call("describe version", client.update_model_version, name, version.version, description=description)
    for key, value in tags.items():
        run.call("tag version", client.set_model_version_tag, name, version.version, key, value)
    run.call("set alias", client.set_registered_model_alias, name, alias, version.version)
    return str(version.version)
