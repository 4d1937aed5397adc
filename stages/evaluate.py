"""Stage evaluate: one prediction pass over the test split; every metric from metrics/predictions.csv."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from coronet import tracking
from coronet.dataset import load_split, make_dataset
from coronet.files import write_csv, write_json
from coronet.metrics import compute_metrics, metrics_table
from coronet.params import class_names, flatten, load_params
from coronet.plots import confusion_matrix_figure, gradcam_panel, roc_figure
from coronet.predict import Classifier

METRICS = Path("metrics")
FIGURES = METRICS / "figures"


def main() -> int:
    params = load_params()
    cfg, classes, tracking_cfg = params["evaluate"], class_names(params), params["tracking"]
    classifier = Classifier.load("models/coronet.keras")
    if classifier.classes != classes:
        raise SystemExit(f"the model's classes {classifier.classes} differ from params classes {classes}")
    test = load_split("test")
    dataset = make_dataset(test, classes, classifier.image_size, int(cfg["batch_size"]))
    probs = np.asarray(classifier.model.predict(dataset, verbose=1))
    predictions = pd.DataFrame({"id": test["id"], "label": test["label"],
                                "predicted": [classes[i] for i in probs.argmax(axis=1)]})
    for i, name in enumerate(classes):
        predictions[f"p_{name}"] = probs[:, i].round(6)
    write_csv(METRICS / "predictions.csv", predictions)

    predictions = pd.read_csv(METRICS / "predictions.csv")  # every metric comes from the file itself
    metrics = compute_metrics(predictions, classes)
    write_json(METRICS / "metrics.json", metrics)
    matrix = np.array([[metrics["confusion_matrix"][a][p] for p in classes] for a in classes])
    confusion_matrix_figure(matrix, classes, FIGURES / "confusion_matrix.png", "CoroNet test confusion matrix")
    roc_figure(predictions, classes, FIGURES / "roc.png")
    gradcam_panel(classifier.model, test, predictions, classes, classifier.image_size, int(cfg["gradcam_per_class"]),
                  FIGURES / "gradcam_panel.png")
    print(metrics_table(metrics, classes))

    run = json.loads(Path("models/run.json").read_text())
    if run.get("run_id"):
        log_to_mlflow(run["run_id"], run.get("model_uri") or f"runs:/{run['run_id']}/model", metrics, tracking_cfg)
    else:
        print("warning: the train stage recorded no MLflow run; metrics are in metrics/ only")
    return 0


def log_to_mlflow(run_id: str, model_uri: str, metrics: dict, tracking_cfg: dict) -> None:
    """Resumes the train stage's run: test metrics, figures, predictions, and the registry entry."""
    import mlflow

    tracker = tracking.Tracker()
    if tracker.call("setup", tracking.configure, tracking_cfg["experiment"]) is None:
        return
    with mlflow.start_run(run_id=run_id):
        numbers = {f"test.{k}": v for k, v in flatten(metrics).items() if isinstance(v, int | float)}
        tracker.call("log metrics", mlflow.log_metrics, numbers)
        for path in (METRICS / "metrics.json", METRICS / "predictions.csv"):
            tracker.call("log artifact", mlflow.log_artifact, str(path))
        tracker.call("log figures", mlflow.log_artifacts, str(FIGURES), "figures")
        version = tracker.call("register model", mlflow.register_model, model_uri,
                               tracking_cfg["registered_model"])
        if version is not None:
            client = mlflow.MlflowClient()
            tracker.call("set alias", client.set_registered_model_alias, tracking_cfg["registered_model"],
                         "candidate", version.version)
            print(f"registered {tracking_cfg['registered_model']} version {version.version} as @candidate")


if __name__ == "__main__":
    sys.exit(main())
