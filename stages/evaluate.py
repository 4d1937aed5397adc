"""Stage evaluate: one prediction pass over every image; every metric from metrics/predictions.csv, with the
evidence around it (intervals, calibration, breakdowns, confound probe, same-source controls, leakage, stress
tests), curves, figures and a model card."""

from __future__ import annotations

import pandas as pd

from coronet import paths
from coronet.errors import ParamsError, run_stage
from coronet.evaluation.evidence import collect
from coronet.evaluation.metrics import compute_metrics, headline, metrics_table
from coronet.evaluation.model_card import render
from coronet.evaluation.plots import stamp
from coronet.evaluation.steps import predict_all, shortcut_warnings, stress_tests, write_curves, write_figures
from coronet.files import atomic_path
from coronet.model.classifier import Classifier
from coronet.model.dataset import read_index
from coronet.model.runtime import import_tensorflow_quietly
from coronet.params import EvaluateParams, load_params
from coronet.records import DataRecord, EvidenceRecord, RunRecord


def main() -> int:
    cfg = EvaluateParams.parse(load_params())
    scheme = cfg.scheme
    # Every record first: a corrupt one stops the stage before it rewrites any output.
    data, run = DataRecord.read(paths.DATA_METRICS), RunRecord.read(paths.RUN)
    classifier = Classifier.load(paths.MODEL, paths.RUN)
    if classifier.classes != scheme.classes:
        raise ParamsError(f"the model's classes {classifier.classes} differ from params classes {scheme.classes}: "
                          "rerun training (dvc repro)")
    manifest = pd.read_csv(paths.MANIFEST, dtype=str, keep_default_na=False)
    images = read_index(paths.IMAGES_CSV, paths.SPLITS).merge(manifest[["id", "age", "group"]], on="id",
                                                               validate="one_to_one")
    test = images[images["split"] == "test"].reset_index(drop=True)

    predictions, controls, external, scored, features = predict_all(classifier, images, cfg.batch_size)
    scores = compute_metrics(predictions, scheme.classes, scheme.groups, scheme.screening)
    found = collect(predictions, controls, external, scored, images, pd.read_csv(paths.IMAGE_STATS), features,
                             cfg)
    (head, details), evidence = headline(scores, found), EvidenceRecord.from_json({**scores, **found})
    head.write(paths.HEADLINE)  # what `dvc metrics show` and `dvc exp show` put first
    details.write(paths.DETAILS)  # per class, the confusion matrix, the shortcut checks' rates
    evidence.write(paths.EVIDENCE)  # everything: intervals, breakdowns, probe, controls, leakage

    curves = write_curves(predictions, scheme.classes, cfg.calibration_bins, paths.CURVES)
    empty_maps = write_figures(predictions, test, classifier, curves, head.ece, paths.HISTORY,
                               cfg.gradcam_per_class, paths.FIGURES)
    stressed = stress_tests(classifier, test, cfg.stress, cfg.seed, cfg.batch_size, cfg.ci_level, paths.STRESS,
                            paths.FIGURES / "stress.png", scheme.screening)
    for figure in sorted(paths.FIGURES.glob("*.png")):  # every figure says what its model was trained on
        stamp(figure, run.trained_on)
    card = render(evidence, data, run, manifest["licence"].value_counts().to_dict(), scheme.classes, stressed)
    with atomic_path(paths.MODEL_CARD) as tmp:
        tmp.write_text(card, encoding="utf-8")

    print(metrics_table(head, details, scheme.classes))
    for warning in shortcut_warnings(evidence, stressed, empty_maps):
        print(warning)
    return 0


if __name__ == "__main__":
    import_tensorflow_quietly()  # before anything imports it: its start-up lines are not for our users
    run_stage(main)
