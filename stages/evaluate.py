"""Stage evaluate: one prediction pass over the test split; every metric from metrics/predictions.csv,
with the evidence around it (intervals, calibration, breakdowns, confound probe, leakage) and a model card."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from coronet import evidence, tracking
from coronet.calibration import reliability_bins
from coronet.confounds import PROBE_WARNING_AUC
from coronet.dataset import load_images, make_dataset
from coronet.files import atomic_path, write_csv, write_json
from coronet.gradcam import gradcam_panel
from coronet.metrics import compute_metrics, confusion, metrics_table
from coronet.model import PENULTIMATE
from coronet.model_card import render
from coronet.params import class_names, flatten, load_params
from coronet.plots import confusion_matrix_figure, reliability_figure, roc_figure
from coronet.predict import Classifier

METRICS = Path("metrics")
FIGURES = METRICS / "figures"


def main() -> int:
    params = load_params()
    cfg, classes, seed, tracking_cfg = params["evaluate"], class_names(params), int(params["seed"]), params["tracking"]
    classifier = Classifier.load("models/coronet.keras")
    if classifier.classes != classes:
        raise SystemExit(f"the model's classes {classifier.classes} differ from params classes {classes}")
    batch = int(cfg["batch_size"])
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

    run = json.loads(Path("models/run.json").read_text())
    _, lineage = tracking.data_lineage()
    licences = manifest["licence"].value_counts().to_dict()
    data = json.loads(Path("metrics/data.json").read_text())
    card = render(metrics, data, {**lineage, "train": run.get("train", {})}, licences, classes)
    with atomic_path(METRICS / "model_card.md") as tmp:
        tmp.write_text(card, encoding="utf-8")

    print(metrics_table(metrics, classes))
    for name, probe in metrics["confound_probe"].items():
        if isinstance(probe, dict) and probe["auc"] >= PROBE_WARNING_AUC:
            print(f"warning: the image source is predictable from {name.replace('_', ' ')} "
                  f"(AUC {probe['auc']:.3f}): the data permit a shortcut; see metrics/model_card.md")
    if run.get("run_id"):
        log_to_mlflow(run["run_id"], run.get("model_uri") or f"runs:/{run['run_id']}/model", metrics, tracking_cfg)
    else:
        print("warning: the train stage recorded no MLflow run; metrics are in metrics/ only")
    return 0


def log_to_mlflow(run_id: str, model_uri: str, metrics: dict, tracking_cfg: dict) -> None:
    """Resumes the train stage's run: test metrics, figures, predictions, model card, registry entry."""
    import mlflow

    tracker = tracking.Tracker()
    if tracker.call("setup", tracking.configure, tracking_cfg["experiment"]) is None:
        return
    with mlflow.start_run(run_id=run_id):
        numbers = {re.sub(r"[^\w\-. :/]", "_", f"test.{k}"): v for k, v in flatten(metrics).items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}  # MLflow's allowed name characters
        tracker.call("log metrics", mlflow.log_metrics, numbers)
        for path in (METRICS / "metrics.json", METRICS / "predictions.csv", METRICS / "model_card.md"):
            tracker.call("log artifact", mlflow.log_artifact, str(path))
        tracker.call("log figures", mlflow.log_artifacts, str(FIGURES), "figures")
        version = tracker.call("register model", mlflow.register_model, model_uri, tracking_cfg["registered_model"])
        if version is not None:
            client = mlflow.MlflowClient()
            tracker.call("set alias", client.set_registered_model_alias, tracking_cfg["registered_model"],
                         "candidate", version.version)
            print(f"registered {tracking_cfg['registered_model']} version {version.version} as @candidate")


if __name__ == "__main__":
    sys.exit(main())
