"""Which model answers, and what is known about it: the one choice ``coronet predict`` and the page make.

``--model PATH``, ``--model-uri URI``, else the pipeline's ``models/coronet.keras``, else (after ``make
demo`` in a fresh clone, say) the registry's ``@candidate`` in this project's MLflow store. With the model
come what its evaluation measured (headline metrics, intervals, stress tests), where they can be found.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coronet import paths
from coronet.errors import UserError
from coronet.model.classifier import Classifier
from coronet.records import EvidenceRecord, HeadlineRecord, StressRecord


class ModelUnavailableError(UserError):
    """No model could be loaded from what was asked for; the message says what to do."""


class StoreUnreachableError(ModelUnavailableError):
    """The tracking server holding the model did not answer."""


@dataclass
class Served:
    classifier: Classifier
    name: str  # the file, or the registered name and version
    run_id: str | None = None
    created: str = ""
    # Its evaluation, where one was found (None: none beside it); a damaged file is an error, never hidden.
    headline: HeadlineRecord | None = None  # metrics/metrics.json
    evidence: EvidenceRecord | None = None  # metrics/evidence.json (intervals, controls, a hospital never seen)
    stress: StressRecord | None = None  # metrics/stress.json: what its input checks quote


EVALUATION = {"headline": (paths.HEADLINE.name, HeadlineRecord), "evidence": (paths.EVIDENCE.name, EvidenceRecord),
              "stress": (paths.STRESS.name, StressRecord)}


def evaluation(folder: Path, where: str = "") -> dict[str, Any]:
    """The evaluation records in ``folder`` (a project's metrics/, a run's downloaded artifacts, then named
    ``where``), by Served's field; one absent is None, one damaged a RecordError naming it."""
    return {key: record.loads((folder / name).read_bytes(), f"{where}{name}" if where else str(folder / name))
            if (folder / name).is_file() else None for key, (name, record) in EVALUATION.items()}


def from_file(model: Path) -> Served:
    """A saved model with run.json beside it; its evaluation's files from the project it sits in."""
    from coronet.records import RunRecord

    try:
        classifier = Classifier.load(model)
        record = RunRecord.read(model.with_name("run.json"))
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"cannot load the model {model}: {exc}") from None
    created = dt.datetime.fromtimestamp(model.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    return Served(classifier, str(model), record.run_id, created,
                  **evaluation(model.resolve().parent.parent / paths.METRICS.name))


def from_registry(model_uri: str) -> Served:
    """A model the package stage logged (``models:/name@alias``, ``models:/name/3``, ``runs:/...``)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from coronet.tracking import store as tracking

    tracking.client_settings()
    tracking.check_store()
    mlflow.set_tracking_uri(tracking.tracking_uri())
    try:
        pyfunc = mlflow.pyfunc.load_model(model_uri)
    except (MlflowException, OSError) as exc:
        if tracking.unreachable(exc):
            raise StoreUnreachableError(f"cannot reach the tracking server {tracking.shown_uri()} for {model_uri}: "
                                        "start it, or point MLFLOW_TRACKING_URI at one that runs") from None
        message = getattr(exc, "message", str(exc))
        raise ModelUnavailableError(f"cannot load the model {model_uri} ({tracking.shown_uri()}): {message}") from None
    classifier = pyfunc.unwrap_python_model().classifier
    name, run_id, created = model_uri, pyfunc.metadata.run_id, ""
    client = mlflow.MlflowClient()
    try:
        if model_uri.startswith("models:/"):
            registered, _, ref = model_uri.removeprefix("models:/").partition("@")
            if ref:
                version = client.get_model_version_by_alias(registered, ref)
            else:
                registered, _, number = registered.partition("/")
                version = client.get_model_version(registered, number)
            name = f"{registered} version {version.version}" + (f" (@{ref})" if ref else "")
            created = dt.datetime.fromtimestamp(version.creation_timestamp / 1000).strftime("%Y-%m-%d %H:%M")
    except MlflowException:  # its name and date are niceties; the model itself loaded
        pass
    found = {}
    if run_id:
        with tempfile.TemporaryDirectory(prefix="coronet-evaluation-") as folder:
            for artifact, _ in EVALUATION.values():
                with contextlib.suppress(MlflowException):  # a run logged without its evaluation: nothing to quote
                    mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=folder)
            found = evaluation(Path(folder), f"run {run_id}'s artifact ")
    return Served(classifier, name, run_id, created, **found)


DISCLAIMER = "CoroNet is research software, not a medical device: do not use its output for diagnosis."


def trained_on(served: Served) -> str:
    """What the answering model was trained on, in one sentence (from its run.json)."""
    data = served.classifier.trained_on
    return data.statement() if data else "What it was trained on is not recorded."


def registered_name() -> str:
    """params tracking.registered_model when run in the project, else the default name."""
    if Path("params.yaml").is_file():
        from coronet.params import TrackingParams, load_params

        return TrackingParams.parse(load_params()).registered_model
    return "coronet"


def pick(model: str | None, model_uri: str | None, registered_name: str = "coronet", say: bool = True) -> Served:
    """The model ``coronet predict`` and the page use (see the module's docstring)."""
    if model_uri:
        return from_registry(model_uri)
    if model or paths.MODEL.is_file():
        return from_file(Path(model or paths.MODEL))
    from coronet.tracking import store as tracking

    uri, store = f"models:/{registered_name}@candidate", tracking.tracking_uri()
    db = tracking.sqlite_file(store)
    missing = ModelUnavailableError(
        f"no model: {paths.MODEL} is not here and {tracking.shown_uri(store)} has no {uri}. Train one (`dvc repro`), "
        "fetch this version's (`dvc pull`), bring in an experiment's (`dvc exp apply NAME`; `dvc exp show` lists "
        "them) or name one with --model PATH or --model-uri URI")
    if db is not None and not db.is_file():
        raise missing  # no store here: do not create an empty one
    try:
        served = from_registry(uri)
    except StoreUnreachableError:
        raise
    except ModelUnavailableError:
        raise missing from None
    if say:
        print(f"using {uri} from {tracking.shown_uri(store)} ({paths.MODEL} is not here)", file=sys.stderr)
    return served
