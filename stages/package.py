"""Stage package: the evaluated model into MLflow for serving. Resumes the train stage's run and logs the
test metrics (linked to the logged model and the test dataset), the evidence, the figures, the model
itself (from code, with signature, input example and requirements) and the registry alias @candidate.

It runs after evaluate, so the train stage depends only on what determines the weights."""

from __future__ import annotations

import functools
import json

from coronet import paths, tracking
from coronet.console import import_tensorflow_quietly
from coronet.dataset import load_split
from coronet.errors import run_stage
from coronet.files import write_json
from coronet.params import flatten, load_params
from coronet.serving import log_pyfunc


def as_mlflow_metrics(headline: dict) -> dict[str, float]:
    """The headline numbers as MLflow metrics under ``test/`` (the confusion matrix stays in the JSON)."""
    return {f"test/{key}": value for key, value in flatten(headline).items()
            if not key.startswith("confusion_matrix.") and key != "n_test" and isinstance(value, int | float)}


def main() -> int:
    params = load_params()
    tracking_cfg, serving_cfg = params["tracking"], params["serving"]
    config = {key: serving_cfg.integer(key, 1) for key in ("max_rows", "batch_size")}
    trained = json.loads(paths.RUN.read_text())
    run = tracking.PipelineRun(tracking_cfg["experiment"])
    record: dict = {"run_id": None, "model_uri": None, "registered_model": None, "version": None}
    if run.resume(trained.get("run_id")):
        model = run.log_model(paths.MODEL, functools.partial(log_pyfunc, paths.MODEL, paths.RUN, config))
        test = tracking.split_datasets({"test": load_split("test", paths.IMAGES_CSV, paths.SPLITS)},
                                      tracking.data_lineage()[0])["testing"][0]
        headline = json.loads(paths.HEADLINE.read_text())
        run.log_metrics(as_mlflow_metrics(headline), model_id=model.model_id if model else None, dataset=test)
        run.log_artifacts([paths.HEADLINE, paths.EVIDENCE, paths.STRESS, paths.PREDICTIONS, paths.MODEL_CARD],
                          {"figures": paths.FIGURES, "curves": paths.CURVES})
        version = run.register(model, tracking_cfg["registered_model"]) if model else None
        run.end()
        record.update(run_id=run.run_id, model_uri=f"models:/{model.model_id}" if model else None,
                      registered_model=tracking_cfg["registered_model"] if version else None, version=version)
        if version:
            print(f"registered {tracking_cfg['registered_model']} version {version} as @candidate")
    write_json(paths.PACKAGE, {**record, "tracking_uri": tracking.tracking_uri(), "errors": run.errors})
    return 0


if __name__ == "__main__":
    import_tensorflow_quietly()  # before anything imports it: its start-up lines are not for our users
    run_stage(main)
