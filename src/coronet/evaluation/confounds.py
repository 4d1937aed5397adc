"""Evidence about shortcuts: results by source and age, and whether the source is predictable.

CoroNet's data pair adult COVID-19 images from one collection with paediatric images from another, so
a model can learn the source instead of the disease. These functions measure how open that door is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

AGE_BANDS = [(0, 18, "0-17"), (18, 40, "18-39"), (40, 60, "40-59"), (60, 80, "60-79"), (80, 200, "80+")]
PROBE_WARNING_AUC = 0.9  # at or above this the source is as good as readable from the input


def age_band(age: Any, cohort_ages: str = "") -> str:
    """The band of a recorded age; a file without one gets its source's cohort ages where the source
    knows them (Kermany's children are 1-5 years old), else "unknown"."""
    try:
        years = float(age)
    except (TypeError, ValueError):
        return cohort_ages or "unknown"
    return next((name for low, high, name in AGE_BANDS if low <= years < high), "unknown")


def breakdown(frame: pd.DataFrame, by: str, classes: list[str]) -> dict[str, dict[str, Any]]:
    """Accuracy and per-class recall within each group of ``by`` (frame: label, predicted, by)."""
    out: dict[str, dict[str, Any]] = {}
    for group, part in frame.groupby(by, sort=True):
        recall = {}
        for name in classes:
            actual = part[part["label"] == name]
            if len(actual):
                recall[name] = float((actual["predicted"] == name).mean())
        out[str(group)] = {"n": len(part), "accuracy": float((part["label"] == part["predicted"]).mean()),
                           "recall": recall}
    return out


def source_probe(features: np.ndarray, source: np.ndarray, folds: int, seed: int) -> dict[str, Any]:
    """How well a cross-validated logistic regression tells the source from ``features``.

    Returns out-of-fold ROC AUC (one source against the rest, averaged, with three or more sources) and
    balanced accuracy; ``{"not_computed": reason}`` with a single source or too few images per source.
    """
    labels, counts = np.unique(source, return_counts=True)
    if len(labels) < 2:
        return {"not_computed": f"every image comes from one source ({labels[0] if len(labels) else 'none'})"}
    if counts.min() < 2:
        return {"not_computed": f"source {labels[counts.argmin()]} has fewer than 2 images"}
    folds = int(min(folds, counts.min()))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    target = np.searchsorted(labels, source)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, features, target, cv=splitter, method="predict_proba")
    auc = roc_auc_score(target, scores[:, 1]) if len(labels) == 2 else roc_auc_score(target, scores, multi_class="ovr")
    return {"auc": float(auc), "balanced_accuracy": float(balanced_accuracy_score(target, scores.argmax(axis=1))),
            "folds": folds}

