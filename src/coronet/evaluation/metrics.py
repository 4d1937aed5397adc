"""Every evaluation number, computed from predictions.csv alone (id, label, predicted, p_<class>)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from coronet.records import DetailsRecord, HeadlineRecord


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def matrix_dict(matrix: np.ndarray, classes: list[str]) -> dict[str, dict[str, int]]:
    """confusion_matrix.<actual>.<predicted>: nested dicts, since DVC drops lists."""
    return {a: {p: int(matrix[i, j]) for j, p in enumerate(classes)} for i, a in enumerate(classes)}


def codes(values: pd.Series | list[str], names: list[str]) -> np.ndarray:
    """Each value's position in ``names`` (-1 for one not there)."""
    return pd.Categorical(values, categories=names).codes.astype(np.int64)


def tally(actual: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """The k x k confusion matrix (rows actual, columns predicted) of two code arrays; rows with a code of -1
    (a name outside the list) are left out, as sklearn's confusion_matrix leaves out labels it was not given.
    The bootstrap calls it a thousand times: a bincount, not sklearn's checks on every call."""
    kept = (actual >= 0) & (predicted >= 0)
    return np.bincount(actual[kept] * k + predicted[kept], minlength=k * k).reshape(k, k)


def confusion(predictions: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """Rows actual, columns predicted, in the fixed class order."""
    return tally(codes(predictions["label"], classes), codes(predictions["predicted"], classes), len(classes))


def one_vs_rest(matrix: np.ndarray, i: int) -> tuple[int, int, int, int]:
    """(tp, fn, fp, tn) of class ``i`` against all others."""
    tp = int(matrix[i, i])
    fn, fp = int(matrix[i].sum()) - tp, int(matrix[:, i].sum()) - tp
    return tp, fn, fp, int(matrix.sum()) - tp - fn - fp


def per_class_scores(matrix: np.ndarray, classes: list[str]) -> dict[str, dict[str, Any]]:
    scores = {}
    for i, name in enumerate(classes):
        tp, fn, fp, tn = one_vs_rest(matrix, i)
        scores[name] = {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
                        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
                        "specificity": _ratio(tn, tn + fp), "support": tp + fn}
    return scores


# The per-class scores averaged in evidence.json and shown per class in details.json (so in `dvc exp show`
# and, through the package stage, in MLflow as test/per_class.<class>.<score>).
HEADLINE_SCORES = ("precision", "recall", "f1", "specificity")


def averages(scores: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Macro (plain mean over classes) and weighted (by support) averages; None scores count as 0."""
    support = np.array([s["support"] for s in scores.values()], dtype=float)
    out: dict[str, dict[str, float | None]] = {"macro_avg": {}, "weighted_avg": {}}
    for key in HEADLINE_SCORES:
        values = np.array([s[key] or 0.0 for s in scores.values()])
        out["macro_avg"][key] = float(values.mean())
        out["weighted_avg"][key] = _ratio(float((values * support).sum()), float(support.sum()))
    return out


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC of ``scores`` for the ``positive`` (bool) rows against the others, as the Mann-Whitney U statistic
    over average ranks (ties count half): sklearn's roc_auc_score value without its checks on every call, which
    were most of the bootstrap's time (benchmarks/bootstrap.py). None without both kinds of rows."""
    positives = int(positive.sum())
    negatives = len(positive) - positives
    if not positives or not negatives:
        return None
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def roc_auc_per_class(predictions: pd.DataFrame, classes: list[str]) -> dict[str, float | None]:
    return {name: roc_auc((predictions["label"] == name).to_numpy(), predictions[f"p_{name}"].to_numpy())
            for name in classes}


def compute_metrics(predictions: pd.DataFrame, classes: list[str], groups: dict[str, list[str]] | None = None,
                    screening: str | None = None) -> dict[str, Any]:
    """The evidence.json tree's core: accuracy, per-class scores, averages, confusion matrix, the grouped
    view (params ``class_groups``: the paper's 3 classes), the screening class against the rest (params
    ``screening_class``: COVID-vs-rest) and one-vs-rest ROC AUC. Views params leave out are recorded as
    not computed, with the reason."""
    actual, predicted = predictions["label"], predictions["predicted"]
    matrix = confusion(predictions, classes)
    scores = per_class_scores(matrix, classes)
    result: dict[str, Any] = {
        "accuracy": _ratio(np.trace(matrix), matrix.sum()),
        "n_test": int(matrix.sum()),
        "per_class": scores,
        **averages(scores),
        "confusion_matrix": matrix_dict(matrix, classes),
    }
    if groups:
        group_of = {member: group for group, members in groups.items() for member in members}
        names = list(groups)
        grouped = tally(codes(actual.map(group_of), names), codes(predicted.map(group_of), names), len(names))
        result["grouped"] = {"groups": groups, "accuracy": _ratio(np.trace(grouped), grouped.sum()),
                             "confusion_matrix": matrix_dict(grouped, names)}
    else:
        result["grouped"] = {"not_computed": "params.yaml class_groups is empty"}
    if screening:
        screened = scores[screening]
        _, fn, _, tn = one_vs_rest(matrix, classes.index(screening))
        result["screening"] = {"class": screening, "sensitivity": screened["recall"],
                               "specificity": screened["specificity"], "ppv": screened["precision"],
                               "npv": _ratio(tn, tn + fn)}
    else:
        result["screening"] = {"not_computed": "params.yaml screening_class is not set"}
    result["roc_auc"] = roc_auc_per_class(predictions, classes)
    return result


def rates(found: dict[str, dict[str, Any] | None]) -> dict[str, float | None]:
    """Rates of evaluation.controls (``rate``, ``n``) as metrics: ``key`` the rate, ``key_n`` the films it is of;
    none where it was not computed."""
    return {f"{key}{suffix}": entry[field] for key, entry in found.items() if entry
            for suffix, field in (("", "rate"), ("_n", "n"))}


def headline(metrics: dict[str, Any], evidence: dict[str, Any]) -> tuple[HeadlineRecord, DetailsRecord]:
    """The two metrics files people compare across versions: metrics/metrics.json (six numbers: `dvc metrics
    show` fits 120 columns, the screened class's sensitivity second) and metrics/details.json (per class, the
    confusion matrix, the shortcut checks' rates). ``metrics`` is :func:`compute_metrics`'s, ``evidence``
    :func:`coronet.evaluation.evidence.collect`'s; the full tree of both goes to evidence.json."""
    screening = metrics["screening"].get("class")
    head = HeadlineRecord(metrics["accuracy"], metrics["macro_avg"]["f1"], evidence["calibration"]["ece"],
                          metrics["n_test"], screening, *(metrics["screening"].get(k) for k in HeadlineRecord.SCORES))
    controls, external, scored = evidence["controls"], evidence["external"], evidence["scored"]
    details = DetailsRecord(
        weighted_f1=metrics["weighted_avg"]["f1"], grouped_accuracy=metrics["grouped"].get("accuracy"),
        per_class={c: {k: s[k] for k in (*HEADLINE_SCORES, "support")} for c, s in metrics["per_class"].items()},
        confusion_matrix=metrics["confusion_matrix"],
        # Is it COVID-19 or the source? (evaluation.controls), each rate with the films it is of
        controls=rates({f"{screening}_rate": controls.get("called_screening"),
                        f"other_source_{screening}_rate": controls.get("other_source_called_screening")}),
        external=rates({f"{screening}_{what}": external.get(what) for what in ("sensitivity", "specificity")}),
        scored=rates({f"{group}_{key}": entry[f"called_{what}"] for group, entry in scored.get("by_group", {}).items()
                      for key, what in ((f"{screening}_rate", "screening"), ("group_rate", "group"))}))
    return head, details


def metrics_table(head: HeadlineRecord, details: DetailsRecord, classes: list[str]) -> str:
    """A short text table of the headline metrics for the terminal."""
    def fmt(v: float | None) -> str:
        return "  n/a" if v is None else f"{v:5.3f}"

    lines = [f"accuracy {fmt(head.accuracy)} on {head.n_test} test images, macro F1 {fmt(head.macro_f1)}",
             f"{'class':<22}{'prec':>7}{'recall':>7}{'f1':>7}{'spec':>7}{'n':>5}"]
    for name in classes:
        s = details.per_class[name]
        lines.append(f"{name:<22}{fmt(s['precision']):>7}{fmt(s['recall']):>7}{fmt(s['f1']):>7}"
                     f"{fmt(s['specificity']):>7}{sum(details.confusion_matrix[name].values()):>5}")
    if details.grouped_accuracy is not None:
        lines.append(f"grouped view (params class_groups) accuracy {fmt(details.grouped_accuracy)}")
    def rated(found: dict[str, Any], words: dict[str, str]) -> str:
        return ", ".join(f"{words.get(key, key.replace('_', ' '))} {fmt(value)} (n={found.get(f'{key}_n')})"
                         for key, value in found.items() if not key.endswith("_n"))

    s = head.screening
    if details.controls:
        words = {f"{s}_rate": "same-source controls", f"other_source_{s}_rate": "the other source's test images"}
        lines.append(f"called {s}: " + rated(details.controls, words))
    if details.external:
        lines.append("a hospital never seen: " + rated(details.external, {f"{s}_sensitivity": f"{s} sensitivity",
                                                                            f"{s}_specificity": "specificity"}))
    if details.scored:
        lines.append("films only scored: " + rated(details.scored, {}))
    return "\n".join(lines)
