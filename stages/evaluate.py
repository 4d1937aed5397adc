"""Stage evaluate: one prediction pass over the test split; every metric from metrics/predictions.csv,
with the evidence around it (intervals, calibration, breakdowns, confound probe, leakage, stress tests)
and a model card."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from coronet import evidence, stress, tracking
from coronet.calibration import reliability_bins
from coronet.confounds import PROBE_WARNING_AUC
from coronet.console import import_tensorflow_quietly
from coronet.dataset import load_images, make_dataset
from coronet.errors import ParamsError, run_stage
from coronet.files import atomic_dir, atomic_path, write_csv, write_json
from coronet.gradcam import gradcam_panel
from coronet.metrics import compute_metrics, confusion, headline, metrics_table
from coronet.model import PENULTIMATE
from coronet.model_card import render
from coronet.params import class_names, load_params
from coronet.plots import (
    confusion_matrix_figure,
    curve_tables,
    reliability_figure,
    roc_figure,
    stress_figure,
    training_curves,
)
from coronet.predict import Classifier

METRICS = Path("metrics")
FIGURES = METRICS / "figures"


def main() -> int:
    params = load_params()
    cfg = params["evaluate"]
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
    write_json(METRICS / "metrics.json", headline(metrics))  # what `dvc exp show` compares
    write_json(METRICS / "evidence.json", metrics)  # everything: intervals, breakdowns, probe, leakage

    reliability = reliability_bins(predictions, classes, int(cfg["calibration_bins"]))
    curves = curve_tables(predictions, classes, reliability)
    for folder in ("roc", "precision_recall"):  # one file per class: `dvc plots` draws each across versions
        with atomic_dir(METRICS / "curves" / folder) as tmp:
            for name, table in curves.items():
                if name.startswith(f"{folder}/"):
                    table.to_csv(tmp / Path(name).name, index=False)
    write_csv(METRICS / "curves/calibration.csv", curves["calibration.csv"])
    training_curves(pd.read_csv("models/history.csv"), FIGURES / "training_curves.png")
    confusion_matrix_figure(confusion(predictions, classes), classes, FIGURES / "confusion_matrix.png",
                            "CoroNet test confusion matrix")
    roc_figure(curves, classes, FIGURES / "roc.png")
    reliability_figure(reliability, FIGURES / "reliability.png", metrics["calibration"]["ece"])
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

    print(metrics_table(headline(metrics), classes))
    for name, probe in metrics["confound_probe"].items():
        if isinstance(probe, dict) and probe["auc"] >= PROBE_WARNING_AUC:
            print(f"warning: the image source is predictable from {name.replace('_', ' ')} "
                  f"(AUC {probe['auc']:.3f}): the data permit a shortcut; see metrics/model_card.md")
    for warning in stressed["warnings"]:
        print(f"warning: {warning}; see metrics/model_card.md")
    return 0


if __name__ == "__main__":
    import_tensorflow_quietly()  # before anything imports it: its start-up lines are not for our users
    run_stage(main)
