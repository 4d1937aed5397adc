"""The pipeline's one MLflow run, whose calls never crash a stage, and what stages log to it (epoch curves,
the splits as datasets).

:class:`PipelineRun` is a run plus safe calls: the first MLflow call that fails prints one warning
naming the cause and the rest of the stage runs without MLflow. What is logged is the stages' choice.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coronet.errors import UserError
from coronet.tracking.store import (
    configure,
    explain,
    note_parallel_sqlite,
    refuse_read_only,
    shown_uri,
)

SYSTEM_METRICS_INTERVAL_S = 10


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
        except UserError:  # the user's to fix (a damaged store, a lock that cannot be used): not an outage
            raise
        except Exception as exc:  # MLflow raises many types (OperationalError, RestException, ...)
            reason = explain(exc)
            refuse_read_only(what, reason)
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
                refuse_read_only("resume run", explain(exc))
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


def split_datasets(frames: dict[str, Any], digests: dict[str, str], archives: dict[str, dict[str, Any]]
                   ) -> dict[str, tuple[Any, dict[str, str]]]:
    """One MLflow dataset per split (context: training / validation / testing -> (dataset, tags)).

    The digest names the processed images (``digests``: :func:`coronet.tracking.lineage.data_digests`), so
    runs on the same data share it; the tags name the split file's sha256, the sources and each archive's
    sha256 and URL (``archives``: :class:`coronet.records.SourcesRecord`'s).
    """
    import mlflow.data

    tags = {"splits.sha256": digests["splits"],
            "sources": ",".join(sorted(archives)),
            **{f"{name}.sha256": record["sha256"] for name, record in archives.items()},
            **{f"{name}.url": record["url"] for name, record in archives.items()}}
    digest = digests["images"][:36]  # MLflow keeps 36 characters
    with warnings.catch_warnings():  # MLflow registers its local-file source twice and warns that it is ambiguous
        warnings.simplefilter("ignore", UserWarning)
        return {ROLES[split]: (mlflow.data.from_pandas(frame[["id", "label", "source", "patient_id", "path"]],
                                                       source="data/processed/images", targets="label",
                                                       name=f"coronet-{split}", digest=digest), tags)
                for split, frame in frames.items() if len(frame)}
