"""Stage evaluate: one prediction pass over the test split; every metric from metrics/predictions.csv,
with the evidence around it (intervals, calibration, breakdowns, confound probe, leakage, stress tests),
curves, figures and a model card."""

from __future__ import annotations

import json

import pandas as pd

from coronet import evidence, paths
from coronet.console import import_tensorflow_quietly
from coronet.dataset import load_images
from coronet.errors import ParamsError, run_stage
from coronet.evaluation import check_params, predict_all, shortcut_warnings, stress_tests, write_curves, write_figures
from coronet.files import atomic_path, write_json
from coronet.metrics import compute_metrics, headline, metrics_table
from coronet.model_card import render
from coronet.params import class_scheme, load_params
from coronet.predict import Classifier


def main() -> int:
    params = load_params()
    cfg, scheme, seed = params["evaluate"], class_scheme(params), params.integer("seed")
    batch, transforms, warn_flip_rate = check_params(cfg)
    classifier = Classifier.load(paths.MODEL, paths.RUN)
    if classifier.classes != scheme.classes:
        raise ParamsError(f"the model's classes {classifier.classes} differ from params classes {scheme.classes}: "
                          "rerun training (dvc repro)")
    manifest = pd.read_csv(paths.MANIFEST, dtype=str, keep_default_na=False)
    images = load_images(paths.IMAGES_CSV, paths.SPLITS).merge(manifest[["id", "age"]], on="id", validate="one_to_one")
    test = images[images["split"] == "test"].reset_index(drop=True)

    predictions, features = predict_all(classifier, images, batch, paths.PREDICTIONS)
    metrics = compute_metrics(predictions, scheme.classes, scheme.groups, scheme.screening)
    metrics.update(evidence.collect(predictions, images, pd.read_csv(paths.IMAGE_STATS), features, scheme.classes,
                                    cfg, seed))
    summary = headline(metrics)
    write_json(paths.HEADLINE, summary)  # what `dvc exp show` compares
    write_json(paths.EVIDENCE, metrics)  # everything: intervals, breakdowns, probe, leakage

    curves = write_curves(predictions, scheme.classes, int(cfg["calibration_bins"]), paths.CURVES)
    write_figures(predictions, test, classifier, curves, metrics["calibration"]["ece"], paths.HISTORY,
                  int(cfg["gradcam_per_class"]), paths.FIGURES)
    stressed = stress_tests(classifier, test, transforms, warn_flip_rate, seed, batch, paths.STRESS,
                            paths.FIGURES / "stress.png")
    card = render(metrics, json.loads(paths.DATA_METRICS.read_text()), json.loads(paths.RUN.read_text())["train"],
                  manifest["licence"].value_counts().to_dict(), scheme.classes, stressed)
    with atomic_path(paths.MODEL_CARD) as tmp:
        tmp.write_text(card, encoding="utf-8")

    print(metrics_table(summary, scheme.classes))
    for warning in shortcut_warnings(metrics, stressed):
        print(warning)
    return 0


if __name__ == "__main__":
    import_tensorflow_quietly()  # before anything imports it: its start-up lines are not for our users
    run_stage(main)
