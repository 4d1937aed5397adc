"""Stage evaluate: one prediction pass over the test split; every metric from metrics/predictions.csv,
with the evidence around it (intervals, calibration, breakdowns, confound probe, leakage, stress tests)
and a model card."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from coronet import evidence, stress, tracking
from coronet.calibration import reliability_bins
from coronet.confounds import PROBE_WARNING_AUC
from coronet.dataset import load_images, make_dataset
from coronet.errors import ParamsError, run_stage
from coronet.files import atomic_path, write_csv, write_json
from coronet.gradcam import gradcam_panel
from coronet.metrics import compute_metrics, confusion, metrics_table
from coronet.model import PENULTIMATE
from coronet.model_card import render
from coronet.params import class_names, flatten, load_params
from coronet.plots import confusion_matrix_figure, reliability_figure, roc_figure, stress_figure
from coronet.predict import Classifier

METRICS = Path("metrics")
FIGURES = METRICS / "figures"


def main() -> int:
    params = load_params()
    cfg, tracking_cfg = params["evaluate"], params["tracking"]
    classes, seed = class_names(params), params.integer("seed")
    batch = cfg.integer("batch_size", 1)
    cfg.number("ci_level", 0, 1, inclusive=False)
    for key, low in (("gradcam_per_class", 0), ("bootstrap_resamples", 1), ("calibration_bins", 1), ("probe_folds", 2)):
        cfg.integer(key, low)
    transforms, warn_flip_rate = stress.check_params(cfg["stress"])
    classifier = Classifier.load("models/coronet.keras")
    if classifier.classes != classes:
        raise ParamsError(f"the model's classes {classifier.classes} differ from params classes {classes}: "
                          "rerun training (dvc repro)")
    manifest = pd.read_csv("data/interim/manifest.csv", dtype=str, keep_default_na=False)
    images = load_images().merge(manifest[["id", "age"]], on="id", validate="one_to_one")
    is_test = (images["split"] == "test").to_numpy()
    test = images[is_test].reset_index(drop=True)

    # One forward pass over every image: class probabilities (the test rows become predictions.csv) and
    # the penultimate features (the confound probe uses all splits).
    import keras

    both = keras.Model(classifier.model.inputs,
                       [classifier.model.get_layer(PENULTIMATE).output, classifier.model.output])
    features, probs = both.predict(make_dataset(images, classes, classifier.image_size, batch), verbose=1)
    probs = np.asarray(probs)[is_test]
    predictions = pd.DataFrame({"id": test["id"], "label": test["label"],
                                "predicted": [classes[i] for i in probs.argmax(axis=1)]})
    for i, name in enumerate(classes):
        predictions[f"p_{name}"] = probs[:, i].round(6)
    write_csv(METRICS / "predictions.csv", predictions)
    predictions = pd.read_csv(METRICS / "predictions.csv")  # every metric comes from the file itself

    metrics = compute_metrics(predictions, classes)
    stats = pd.read_csv("data/interim/image_stats.csv")
    metrics.update(evidence.collect(predictions, images, stats, np.asarray(features), classes, cfg, seed))
    write_json(METRICS / "metrics.json", metrics)

    confusion_matrix_figure(confusion(predictions, classes), classes, FIGURES / "confusion_matrix.png",
                            "CoroNet test confusion matrix")
    roc_figure(predictions, classes, FIGURES / "roc.png")
    reliability_figure(reliability_bins(predictions, classes, int(cfg["calibration_bins"])),
                       FIGURES / "reliability.png", metrics["calibration"]["ece"])
    gradcam_panel(classifier.model, test, predictions, classes, classifier.image_size, int(cfg["gradcam_per_class"]),
                  FIGURES / "gradcam_panel.png")

    # Nuisance transforms of the test images through the loaded model: does the answer follow the frame?
    started = time.monotonic()
    stressed = stress.run(classifier, stress.load_images(list(test["path"])), list(test["label"]), transforms, seed,
                          batch)
    stressed.update(warn_flip_rate=warn_flip_rate, warnings=stress.warnings(stressed, warn_flip_rate))
    write_json(METRICS / "stress.json", stressed)
    stress_figure(stressed, classes, FIGURES / "stress.png")
    print(f"stress tests: {sum(map(len, transforms.values()))} transformed copies of {len(test)} test images in "
          f"{time.monotonic() - started:.1f} s")

    run = json.loads(Path("models/run.json").read_text())
    _, lineage = tracking.data_lineage()
    licences = manifest["licence"].value_counts().to_dict()
    data = json.loads(Path("metrics/data.json").read_text())
    card = render(metrics, data, {**lineage, "train": run.get("train", {})}, licences, classes, stressed)
    with atomic_path(METRICS / "model_card.md") as tmp:
        tmp.write_text(card, encoding="utf-8")

    print(metrics_table(metrics, classes))
    for name, probe in metrics["confound_probe"].items():
        if isinstance(probe, dict) and probe["auc"] >= PROBE_WARNING_AUC:
            print(f"warning: the image source is predictable from {name.replace('_', ' ')} "
                  f"(AUC {probe['auc']:.3f}): the data permit a shortcut; see metrics/model_card.md")
    for warning in stressed["warnings"]:
        print(f"warning: {warning}; see metrics/model_card.md")
    log_to_mlflow(run, metrics, tracking_cfg)
    return 0


def log_to_mlflow(run_info: dict, metrics: dict, tracking_cfg: dict) -> None:
    """Resumes the train stage's run: test metrics, figures, predictions, model card, registry entry.

    Never fails the stage: if that run is gone (another store, deleted) evaluation goes to a new run of
    the experiment and says so; if the store cannot be reached or is locked, a warning says so and the
    outputs under metrics/ stand.
    """
    import mlflow

    tracker = tracking.Tracker()
    experiment_id = tracker.call("setup", tracking.configure, tracking_cfg["experiment"])
    if experiment_id is None:
        print(f"warning: MLflow ({tracking.tracking_uri()}) cannot be reached; the results are in metrics/ only")
        return
    run_id = run_info.get("run_id")
    model_uri = run_info.get("model_uri") or (f"runs:/{run_id}/model" if run_id else None)
    run = tracker.call("resume run", mlflow.start_run, run_id=run_id) if run_id else None
    if run is None:
        run = tracker.call("start run", mlflow.start_run, experiment_id=experiment_id, run_name="evaluate")
        if run is None:
            print("warning: no MLflow run could be opened; the results are in metrics/ only")
            return
        print(f"warning: the train stage's MLflow run {run_id or '(none recorded)'} cannot be resumed; evaluation "
              f"logged to the new run {run.info.run_id}, without a registered model")
        model_uri = None
    try:
        numbers = {re.sub(r"[^\w\-. :/]", "_", f"test.{k}"): v for k, v in flatten(metrics).items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}  # MLflow's allowed name characters
        tracker.call("log metrics", mlflow.log_metrics, numbers)
        for path in (METRICS / "metrics.json", METRICS / "predictions.csv", METRICS / "model_card.md",
                     METRICS / "stress.json"):
            tracker.call("log artifact", mlflow.log_artifact, str(path))
        tracker.call("log figures", mlflow.log_artifacts, str(FIGURES), "figures")
        if model_uri:
            register(tracker, model_uri, tracking_cfg["registered_model"])
    finally:
        tracker.call("end run", mlflow.end_run)


def register(tracker: tracking.Tracker, model_uri: str, name: str) -> None:
    import mlflow

    version = tracker.call("register model", mlflow.register_model, model_uri, name)
    if version is not None:
        tracker.call("set alias", mlflow.MlflowClient().set_registered_model_alias, name, "candidate", version.version)
        print(f"registered {name} version {version.version} as @candidate")


if __name__ == "__main__":
    run_stage(main)
