"""Everything around the headline numbers: intervals, calibration, breakdowns, the confound probe and
the leakage check, as nested dicts for metrics.json."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from coronet.data import sources
from coronet.data.split import leakage_counts
from coronet.evaluation import controls as same_source
from coronet.evaluation.calibration import brier_score, expected_calibration_error
from coronet.evaluation.confounds import age_band, breakdown, source_probe
from coronet.evaluation.intervals import bootstrap, per_class_wilson, wilson
from coronet.evaluation.metrics import averages, codes, confusion, per_class_scores, roc_auc, tally
from coronet.params import EvaluateParams


def resampled_statistics(predictions: pd.DataFrame, classes: list[str]
                         ) -> dict[str, Callable[[np.ndarray], float | None]]:
    """Macro F1 and each class's ROC AUC of the test images at given rows: arrays taken once, so that each of
    the bootstrap's resamples costs a bincount and a ranking."""
    actual, predicted, k = codes(predictions["label"], classes), codes(predictions["predicted"], classes), len(classes)

    def macro_f1(rows: np.ndarray) -> float | None:
        return averages(per_class_scores(tally(actual[rows], predicted[rows], k), classes))["macro_avg"]["f1"]

    def auc(i: int) -> Callable[[np.ndarray], float | None]:
        scores = predictions[f"p_{classes[i]}"].to_numpy()
        return lambda rows: roc_auc(actual[rows] == i, scores[rows])

    return {"macro_f1": macro_f1, **{f"roc_auc.{c}": auc(i) for i, c in enumerate(classes)}}


def intervals(predictions: pd.DataFrame, classes: list[str], resamples: int, seed: int, level: float
              ) -> dict[str, Any]:
    statistics = resampled_statistics(predictions, classes)
    boot = bootstrap(len(predictions), statistics, resamples, seed, level)
    return {
        "level": level,
        "per_class": per_class_wilson(confusion(predictions, classes), classes, level),
        "accuracy": wilson(int((predictions["label"] == predictions["predicted"]).sum()), len(predictions), level),
        "macro_f1": boot["macro_f1"],
        "roc_auc": {c: boot[f"roc_auc.{c}"] for c in classes},
        "bootstrap_resamples": resamples,
    }


def collect(predictions: pd.DataFrame, controls: pd.DataFrame, external: pd.DataFrame, scored: pd.DataFrame,
            images: pd.DataFrame, stats: pd.DataFrame, features: np.ndarray, cfg: EvaluateParams) -> dict[str, Any]:
    """``images``: every image with id, split, cohort, source, patient_id, hashes, age (all splits, the
    controls too); ``features``: the model's penultimate activations for ``images`` rows, in that order;
    ``controls``: the scored same-source controls' predictions; ``external``: the external sources'; ``scored``:
    the films only scored against a class group."""
    classes = cfg.scheme.classes
    cohorts = {name: source.cohort_ages for name, source in sources.registered().items()}
    test = predictions.merge(images[["id", "source", "age"]], on="id", validate="one_to_one")
    test["age_band"] = [age_band(a, cohorts.get(s, "")) for a, s in zip(test["age"], test["source"], strict=True)]
    # The probe asks whether the sources trained on can be told apart: an external source's films stay out.
    trained = ~same_source.external_rows(images)
    ordered_stats = images.loc[trained, ["id"]].merge(stats, on="id", how="left", validate="one_to_one")
    plain = ordered_stats.drop(columns="id").to_numpy(dtype=float)
    source, features = images.loc[trained, "source"].to_numpy(), features[trained]
    return {
        "intervals": intervals(predictions, classes, cfg.bootstrap_resamples, cfg.seed, cfg.ci_level),
        "calibration": {"ece": expected_calibration_error(predictions, classes, cfg.calibration_bins),
                        "brier": brier_score(predictions, classes), "bins": cfg.calibration_bins},
        "by_source": breakdown(test, "source", classes),
        "by_age_band": breakdown(test, "age_band", classes),
        "confound_probe": {"image_statistics": source_probe(plain, source, cfg.probe_folds, cfg.seed),
                           "model_features": source_probe(features, source, cfg.probe_folds, cfg.seed),
                           "images": int(trained.sum())},
        "controls": same_source.summarize(controls, test, cfg.scheme.screening, cfg.ci_level),
        "external": same_source.summarize_external(external, test, cfg.scheme.screening, classes, cfg.ci_level),
        "scored": same_source.summarize_scored(scored, test, cfg.scheme.screening, cfg.scheme.groups, classes,
                                               cfg.ci_level),
        "leakage": leakage_counts(images),
    }
