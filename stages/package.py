"""Stage package: the evaluated model into MLflow for serving. Resumes the train stage's run and logs the
test metrics (linked to the logged model and the test dataset), the evidence, the figures, the model
itself (from code, with signature, input example and requirements) and the registry alias @candidate.

It runs after evaluate, so the train stage depends only on what determines the weights. A new model is
logged (and registered as a new version) whenever what it serves changes: the model file, run.json, the
serving params or the serving code."""

from __future__ import annotations

import functools

from coronet import paths
from coronet.errors import run_stage
from coronet.model.classifier import Classifier
from coronet.model.dataset import load_split
from coronet.model.runtime import import_tensorflow_quietly
from coronet.params import ServingParams, TrackingParams, flatten, load_params
from coronet.records import DetailsRecord, HeadlineRecord, PackageRecord, RunRecord, SourcesRecord
from coronet.serving.pyfunc import log_pyfunc, model_config, served_digest
from coronet.tracking.lineage import data_digests
from coronet.tracking.registry import register, servable_model
from coronet.tracking.run import PipelineRun, split_datasets
from coronet.tracking.store import shown_uri

SERVED = {"keras_model": paths.MODEL, "meta": paths.RUN, "stress": paths.STRESS}


def as_mlflow_metrics(head: HeadlineRecord, details: DetailsRecord) -> dict[str, float]:
    """metrics.json's and details.json's scores as MLflow metrics under ``test/`` (the confusion matrix and the
    counts stay in the JSON)."""
    numbers = {**head.to_json(), **{k: v for k, v in details.to_json().items() if k != "confusion_matrix"}}
    return {f"test/{key}": value for key, value in flatten(numbers).items()  # scores only, no counts
            if key != "n_test" and not key.endswith(("_n", ".support")) and isinstance(value, float)}


def main() -> int:
    params = load_params()
    names, serving = TrackingParams.parse(params), ServingParams.parse(params)
    trained = RunRecord.read(paths.RUN)
    head, details = HeadlineRecord.read(paths.HEADLINE), DetailsRecord.read(paths.DETAILS)
    # never register a model under another's record: its file, its seal and its real input and output shapes
    Classifier.load(paths.MODEL, paths.RUN)
    config = model_config(serving.as_dict())
    digest = served_digest(SERVED, config)
    run = PipelineRun(names.experiment)
    record = PackageRecord(None, None, None, None, digest, shown_uri(), [])
    if run.resume(trained.run_id):
        model = servable_model(run, digest, functools.partial(log_pyfunc, SERVED, config))
        test = split_datasets({"test": load_split("test", paths.IMAGES_CSV, paths.SPLITS)},
                              data_digests(paths.IMAGES_CSV, paths.SPLITS),
                              SourcesRecord.read(paths.SOURCES).archives)["testing"][0]
        run.log_metrics(as_mlflow_metrics(head, details), model_id=model.model_id if model else None, dataset=test)
        run.log_artifacts([paths.HEADLINE, paths.DETAILS, paths.EVIDENCE, paths.STRESS, paths.PREDICTIONS,
                           paths.CONTROLS, paths.EXTERNAL, paths.SCORED, paths.MODEL_CARD],
                          {"figures": paths.FIGURES, "curves": paths.CURVES})
        version = register(run, model, names.registered_model, trained.trained_on.statement(),
                           trained.trained_on.tags()) if model else None
        run.end()
        record.run_id, record.model_uri = run.run_id, f"models:/{model.model_id}" if model else None
        record.registered_model, record.version = (names.registered_model, version) if version else (None, None)
        if version:
            print(f"registered {names.registered_model} version {version} as @candidate")
    record.errors = run.errors
    record.write(paths.PACKAGE)
    return 0


if __name__ == "__main__":
    import_tensorflow_quietly()  # before anything imports it: its start-up lines are not for our users
    run_stage(main)
