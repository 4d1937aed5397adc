"""The MLflow tracking store: where runs go (SQLite beside the repository, or a server), the MLflow client's
settings, the experiment, and why a call to the store failed, in one line."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from coronet.errors import UserError
from coronet.files import exclusive_lock, repository_root

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
# SQLite lets one writer in at a time and makes the others wait this long (Python's default: 5 s) before
# "database is locked"; queued experiments (dvc queue start -j N) write to one file side by side.
SQLITE_BUSY_TIMEOUT_S = 60
# Opening a store takes seconds (a migration, once); a lock held longer is a process that hangs.
STORE_LOCK_WAIT_S = 120
# MLflow's HTTP client retries 7 times with exponential backoff and waits up to 120 s a request by default:
# with the tracking server down, every epoch would stall for minutes. A few seconds, then one warning.
HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
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
    with store_lock(uri):  # a store another process is creating is checked once it is made
        check_store(uri, locked_ok=False)
        return _experiment_id(mlflow, uri, experiment)


def busy_timeout(uri: str) -> float:
    """How long a SQLite store's user waits for a lock: the URI's ``timeout=``, else SQLITE_BUSY_TIMEOUT_S."""
    found = re.search(r"[?&]timeout=([0-9.]+)", uri)
    return float(found[1]) if found else SQLITE_BUSY_TIMEOUT_S


def check_store(uri: str | None = None, locked_ok: bool = True) -> None:
    """A SQLite store that exists must be a database MLflow made: a truncated or overwritten file is one line
    saying what to do, before MLflow meets it (its traceback runs to a hundred lines).

    A store still locked after the busy timeout is another process's for now: with ``locked_ok`` False (a
    pipeline stage, which goes on without MLflow) that is raised at once. MLflow would otherwise retry opening
    it ten times, each after the busy timeout and a growing pause: 77 s measured with a 2-second timeout, about
    11 minutes with the default 60."""
    import sqlite3

    uri = uri or tracking_uri()
    db = sqlite_file(uri)
    if db is None or not db.is_file() or db.stat().st_size == 0:  # none yet: MLflow makes it
        return
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True,
                                                timeout=busy_timeout(uri))) as con:
            con.execute("SELECT version_num FROM alembic_version").fetchall()
            con.execute("SELECT count(*) FROM experiments").fetchall()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):  # busy, not broken: the call that needs it waits or says so itself
            if locked_ok:
                return
            raise
        raise TrackingConfigError(_damaged(db, exc)) from None
    except sqlite3.Error as exc:
        raise TrackingConfigError(_damaged(db, exc)) from None


def _damaged(db: Path, exc: Exception) -> str:
    return (f"{db} is not a usable MLflow store ({exc}): it is damaged or not MLflow's. Move it aside "
            f"(mv {db.name} {db.name}.broken) and rerun the pipeline to start a new one, or point "
            "MLFLOW_TRACKING_URI at a working store")


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Holds ``<db>.lock`` while a process opens a SQLite store: the first open creates the database and runs
    MLflow's schema migration, and two experiments starting together on a fresh store would both migrate it
    (one then fails: "duplicate column name"). Other stores migrate on their server: no lock."""
    db = sqlite_file(uri)
    if db is None:
        yield
        return
    with exclusive_lock(db.with_name(db.name + ".lock"), f"opening the MLflow store {db.name}", STORE_LOCK_WAIT_S):
        yield


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


def refuse_read_only(what: str, reason: str) -> None:
    if reason == READ_ONLY:
        raise TrackingConfigError(f"{shown_uri()} is read-only (MLflow {what} failed): make the database and its "
                                  "folder writable, or point MLFLOW_TRACKING_URI at a store you can write to")
