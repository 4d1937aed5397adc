"""The bootstrap's intervals (macro F1 and each class's ROC AUC over 1000 resamples, evaluate's default) two
ways in one run: resampling the predictions table and calling sklearn on each resample (how evaluate did it),
against resampling row numbers over arrays taken once (how it does it now). Both must give the same intervals.

Run: .venv/bin/python benchmarks/bootstrap.py [--images 26] [--resamples 1000]

--images 26 is the demo's test split, 250 the paper's. The last line is ``sklearn per resample / arrays: <ratio>``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, roc_auc_score

from coronet.evaluation.evidence import resampled_statistics
from coronet.evaluation.intervals import bootstrap
from coronet.evaluation.metrics import averages, per_class_scores

CLASSES = ["covid", "normal", "pneumonia_bacterial", "pneumonia_viral"]


def predictions(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = rng.choice(CLASSES, n)
    p = rng.dirichlet(np.ones(len(CLASSES)), n)
    p[np.arange(n), [CLASSES.index(x) for x in labels]] += 0.5  # a model that is right more often than not
    p = np.round(p / p.sum(1, keepdims=True), 2)  # rounded: ties, as a real model's outputs have
    frame = pd.DataFrame({"label": labels, "predicted": [CLASSES[i] for i in p.argmax(1)]})
    for i, c in enumerate(CLASSES):
        frame[f"p_{c}"] = p[:, i]
    return frame


def per_resample_sklearn(frame: pd.DataFrame, resamples: int, seed: int) -> dict[str, list[float]]:
    """The former way: each resample a new table, sklearn's confusion matrix and roc_auc_score on it."""
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {"macro_f1": [], **{f"roc_auc.{c}": [] for c in CLASSES}}
    for _ in range(resamples):
        sample = frame.iloc[rng.integers(0, len(frame), len(frame))]
        matrix = confusion_matrix(sample["label"], sample["predicted"], labels=CLASSES)
        values["macro_f1"].append(averages(per_class_scores(matrix, CLASSES))["macro_avg"]["f1"])
        for c in CLASSES:
            truth = (sample["label"] == c).to_numpy()
            if 0 < truth.sum() < len(truth):
                values[f"roc_auc.{c}"].append(float(roc_auc_score(truth, sample[f"p_{c}"])))
    return values


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=26)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    frame = predictions(args.images)
    started = time.perf_counter()
    old = per_resample_sklearn(frame, args.resamples, seed=42)
    old_s = time.perf_counter() - started
    started = time.perf_counter()
    new = bootstrap(len(frame), resampled_statistics(frame, CLASSES), args.resamples, seed=42)
    new_s = time.perf_counter() - started
    for name, values in old.items():
        expected = {"low": np.percentile(values, 2.5), "high": np.percentile(values, 97.5)}
        assert new[name] is not None and all(abs(new[name][k] - expected[k]) < 1e-12 for k in expected), name
    print(f"{args.resamples} resamples of {args.images} images, 5 statistics; same intervals both ways")
    print(f"sklearn on each resampled table: {old_s:.2f} s")
    print(f"row numbers over arrays:        {new_s:.2f} s")
    print(f"sklearn per resample / arrays: {old_s / new_s:.1f}")


if __name__ == "__main__":
    main()
