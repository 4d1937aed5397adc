"""95% confidence intervals: Wilson for proportions (accuracy, per-class rates, controls), a seeded bootstrap
over test images for the statistics that need one (macro F1, ROC AUC), and how both are shown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import binomtest

from coronet.evaluation.metrics import one_vs_rest


def wilson(successes: int, trials: int, level: float = 0.95) -> dict[str, float] | None:
    """Wilson score interval of successes / trials; None when there are no trials."""
    if trials == 0:
        return None
    ci = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=level, method="wilson")
    return {"low": float(ci.low), "high": float(ci.high)}


def per_class_wilson(matrix: np.ndarray, classes: list[str], level: float = 0.95) -> dict[str, dict[str, Any]]:
    """Precision, recall and specificity intervals from the confusion matrix (rows actual, columns predicted)."""
    out = {}
    for i, name in enumerate(classes):
        tp, fn, fp, tn = one_vs_rest(matrix, i)
        out[name] = {"precision": wilson(tp, tp + fp, level), "recall": wilson(tp, tp + fn, level),
                     "specificity": wilson(tn, tn + fp, level)}
    return out


def bootstrap(
    n: int,
    statistics: dict[str, Callable[[np.ndarray], float | None]],
    resamples: int,
    seed: int,
    level: float = 0.95,
) -> dict[str, dict[str, Any] | None]:
    """Percentile intervals of each statistic over ``resamples`` resamples of the ``n`` test images drawn with
    replacement; a statistic is called with each resample's row numbers. Resamples where a statistic is
    undefined (an AUC without both classes) are left out of that statistic's interval."""
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {name: [] for name in statistics}
    for _ in range(resamples):
        rows = rng.integers(0, n, n)
        for name, statistic in statistics.items():
            value = statistic(rows)
            if value is not None and not np.isnan(value):
                values[name].append(value)
    tail = (1 - level) / 2 * 100
    out: dict[str, dict[str, Any] | None] = {}
    for name, v in values.items():
        out[name] = {"low": float(np.percentile(v, tail)), "high": float(np.percentile(v, 100 - tail))} if v else None
        if out[name] and max(v) - min(v) <= SAME * max(1.0, abs(max(v))):
            # A perfect score (or any constant one) resamples to itself, give or take the last bit of a float
            # (0.9999999999999999 beside 1.0): a zero-width interval is no statement of certainty, only of too
            # few images to see the error.
            out[name]["degenerate"] = True
    return out


SAME = 1e-9  # values this close (relative) are one value that floating point wrote two ways


def percent(value: float | None, digits: int = 1, missing: str = "n/a") -> str:
    """A share as people read it: 0.8462 -> "84.6%"; ``missing`` where there is none."""
    return missing if value is None else f"{100 * value:.{digits}f}%"


def shown(interval: dict[str, Any] | None, n: int | None = None, scale: float = 100, digits: int = 1,
          unit: str = "") -> str:
    """An interval as people read it, with a leading space: " (81.2-94.1)"; a degenerate bootstrap interval
    says so instead of "(100.0-100.0)"; "" when there is none."""
    if not interval:
        return ""
    low, high = f"{scale * interval['low']:.{digits}f}", f"{scale * interval['high']:.{digits}f}"
    images = f"{n} images" if n else "these images"
    if interval.get("degenerate"):
        return f" (all resamples agree: {images} cannot bound it)"
    if low == high:  # not one value, but one at the digits shown: never print a zero-width interval
        return f" (nearly all resamples agree at {low}{unit}: {images} cannot bound it)"
    return f" ({low}-{high}{unit})"
