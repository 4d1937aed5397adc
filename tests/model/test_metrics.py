"""Model tier: the metric code on a prediction set whose metrics were worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import CLASSES
from coronet.evaluation.metrics import compute_metrics

GROUPS = {"covid": ["covid"], "normal": ["normal"], "pneumonia": ["pneumonia_bacterial", "pneumonia_viral"]}
PAIRS = [  # (actual, predicted)
    ("covid", "covid"), ("covid", "covid"), ("covid", "covid"), ("covid", "normal"),
    ("normal", "normal"), ("normal", "normal"), ("normal", "pneumonia_viral"),
    ("pneumonia_bacterial", "pneumonia_bacterial"), ("pneumonia_bacterial", "pneumonia_viral"),
    ("pneumonia_viral", "pneumonia_bacterial"),
]


def hand_made() -> pd.DataFrame:
    frame = pd.DataFrame(PAIRS, columns=["label", "predicted"])
    for c in CLASSES:  # one-hot probabilities: AUC then has a closed form (ties count one half)
        frame[f"p_{c}"] = (frame["predicted"] == c).astype(float)
    return frame


@pytest.fixture
def metrics():
    return compute_metrics(hand_made(), CLASSES, GROUPS, "covid")


def test_accuracy_and_confusion_matrix(metrics):
    assert metrics["accuracy"] == pytest.approx(6 / 10)
    cm = metrics["confusion_matrix"]
    assert cm["covid"] == {"covid": 3, "normal": 1, "pneumonia_bacterial": 0, "pneumonia_viral": 0}
    assert cm["normal"]["pneumonia_viral"] == 1 and cm["pneumonia_viral"]["pneumonia_bacterial"] == 1
    assert sum(v for row in cm.values() for v in row.values()) == 10


def test_per_class_scores(metrics):
    s = metrics["per_class"]
    assert s["covid"] == pytest.approx({"precision": 1.0, "recall": 0.75, "f1": 6 / 7, "specificity": 1.0, "support": 4})
    assert s["normal"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "specificity": 6 / 7,
                                         "support": 3})
    assert s["pneumonia_bacterial"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5,
                                                      "specificity": 7 / 8, "support": 2})
    assert s["pneumonia_viral"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                                  "specificity": 7 / 9, "support": 1})


def test_averages(metrics):
    assert metrics["macro_avg"]["precision"] == pytest.approx((1 + 2 / 3 + 0.5 + 0) / 4)
    assert metrics["macro_avg"]["recall"] == pytest.approx((0.75 + 2 / 3 + 0.5 + 0) / 4)
    assert metrics["weighted_avg"]["recall"] == pytest.approx(0.6)  # support-weighted recall is accuracy


def test_grouped_view_and_screening(metrics):
    three = metrics["grouped"]
    assert three["accuracy"] == pytest.approx(0.8) and three["groups"] == GROUPS
    assert three["confusion_matrix"]["pneumonia"] == {"covid": 0, "normal": 0, "pneumonia": 3}
    assert three["confusion_matrix"]["normal"] == {"covid": 0, "normal": 2, "pneumonia": 1}
    screening = {k: v for k, v in metrics["screening"].items() if k != "class"}
    assert metrics["screening"]["class"] == "covid"
    assert screening == pytest.approx({"sensitivity": 0.75, "specificity": 1.0, "ppv": 1.0, "npv": 6 / 7})


def test_views_params_leave_out_say_so():
    frame = pd.DataFrame([("covid", "normal"), ("normal", "normal")], columns=["label", "predicted"])
    for c in CLASSES:
        frame[f"p_{c}"] = 0.25
    out = compute_metrics(frame, CLASSES)
    assert out["grouped"] == {"not_computed": "params.yaml class_groups is empty"}
    assert "not_computed" in out["screening"]


def test_roc_auc(metrics):
    # covid: 3 positives score 1 beat all 6 negatives; 1 positive ties all 6 at 0 -> (18 + 3) / 24
    assert metrics["roc_auc"]["covid"] == pytest.approx(21 / 24)


def test_the_rank_auc_and_the_bincount_matrix_are_sklearns_on_random_data_with_ties():
    """The bootstrap's fast statistics against sklearn's own, on scores rounded to make ties and on labels
    that include one outside the class list (sklearn leaves it out, so must the tally)."""
    from sklearn.metrics import confusion_matrix, roc_auc_score

    from coronet.evaluation.metrics import codes, roc_auc, tally

    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(5, 60))
        positive = rng.random(n) < 0.4
        scores = np.round(rng.random(n), 1)
        expected = roc_auc_score(positive, scores) if 0 < positive.sum() < n else None
        assert roc_auc(positive, scores) == (None if expected is None else pytest.approx(expected, abs=1e-12))
        names = ["a", "b", "c"]
        actual, predicted = rng.choice(["a", "b", "c", "x"], n), rng.choice(names, n)
        assert (tally(codes(actual, names), codes(predicted, names), 3)
                == confusion_matrix(actual, predicted, labels=names)).all()


def test_undefined_precision_is_null_not_zero():
    frame = pd.DataFrame([("covid", "normal"), ("normal", "normal")], columns=["label", "predicted"])
    for c in CLASSES:
        frame[f"p_{c}"] = 0.25
    out = compute_metrics(frame, CLASSES)
    assert out["per_class"]["covid"]["precision"] is None  # never predicted
    assert out["roc_auc"]["pneumonia_viral"] is None  # no positives


def test_precision_recall_curve_has_one_point_per_recall():
    """The raw points share recalls, and `dvc plots show` joined them into drops the model does not
    have. By hand: scores 0.9 (positive), 0.8 (negative), 0.7 (positive), 0.1 (negative) give recall 0.5 at
    precision 1 then 1/2, recall 1 at 2/3 then 1/2; interpolated, each recall keeps its best precision at that
    recall or above."""

    from coronet.evaluation.plots import interpolated_precision_recall

    curve = interpolated_precision_recall(np.array([True, False, True, False]), pd.Series([0.9, 0.8, 0.7, 0.1]))
    assert curve.to_dict("list") == {"recall": [0.0, 0.5, 1.0], "precision": [1.0, 1.0, 0.666667]}


def test_accuracy_interval_is_wilson_and_a_perfect_auc_interval_says_it_cannot_bound():
    """"accuracy 100.0% (100.0-100.0)" and "ROC AUC 1.000 (1.000-1.000)" on 26 images."""
    from coronet.evaluation.evidence import intervals
    from coronet.evaluation.intervals import shown, wilson

    classes = ["a", "b"]
    perfect = pd.DataFrame({"label": ["a"] * 13 + ["b"] * 13, "predicted": ["a"] * 13 + ["b"] * 13,
                            "p_a": [0.9] * 13 + [0.1] * 13, "p_b": [0.1] * 13 + [0.9] * 13})
    found = intervals(perfect, classes, resamples=50, seed=0, level=0.95)
    assert found["accuracy"] == wilson(26, 26) and found["accuracy"]["low"] < 0.9  # Wilson: 26/26 -> 0.871-1
    assert found["roc_auc"]["a"]["degenerate"] is True
    assert shown(found["roc_auc"]["a"], 26, 1, 3) == " (all resamples agree: 26 images cannot bound it)"
    assert shown(found["accuracy"], 26) == f" ({100 * found['accuracy']['low']:.1f}-100.0)"


def test_an_interval_that_floating_point_writes_two_ways_is_still_degenerate_and_never_printed_zero_wide():
    """The card printed "normal ... 1.000 (1.000-1.000)": evidence.json held low 0.9999999999999999, high 1.0 and
    no degenerate flag (an exact float comparison)."""
    from coronet.evaluation.intervals import bootstrap, shown

    wobble = iter([1.0, 1.0 - 1e-16] * 100)  # one value, written two ways by float arithmetic
    found = bootstrap(26, {"f1": lambda _: next(wobble)}, resamples=50, seed=0)["f1"]
    assert found["low"] != found["high"] and found["degenerate"] is True
    assert shown(found, 26, 1, 3) == " (all resamples agree: 26 images cannot bound it)"
    close = {"low": 0.99996, "high": 1.0}  # two values, one at three decimals: not printed "(1.000-1.000)"
    assert shown(close, 26, 1, 3) == " (nearly all resamples agree at 1.000: 26 images cannot bound it)"
    assert shown({"low": 0.5, "high": 0.75}, 26) == " (50.0-75.0)"


def test_a_new_per_class_score_is_its_line_and_its_name(monkeypatch):
    """ARCHITECTURE.md, "Adding a metric": a score computed in per_class_scores and named in HEADLINE_SCORES is
    averaged in evidence.json and shown per class in details.json, which the package stage logs to MLflow."""
    from coronet.evaluation import metrics as module

    computed = module.per_class_scores

    def with_npv(matrix, classes):
        scores = computed(matrix, classes)
        for i, name in enumerate(classes):
            _, fn, _, tn = module.one_vs_rest(matrix, i)
            scores[name]["npv"] = tn / (tn + fn)
        return scores

    monkeypatch.setattr(module, "per_class_scores", with_npv)
    monkeypatch.setattr(module, "HEADLINE_SCORES", (*module.HEADLINE_SCORES, "npv"))
    out = compute_metrics(hand_made(), CLASSES, GROUPS, "covid")
    # by hand from PAIRS: (true negatives, false negatives) per class: covid (6, 1), normal (6, 1),
    # bacterial (7, 1), viral (7, 1)
    assert out["macro_avg"]["npv"] == pytest.approx((6 / 7 + 6 / 7 + 7 / 8 + 7 / 8) / 4)
    _, details = module.headline(out, {"calibration": {"ece": 0.0}, "controls": {}, "external": {}, "scored": {}})
    assert details.per_class["covid"]["npv"] == pytest.approx(6 / 7)
    assert details.per_class["pneumonia_viral"]["npv"] == pytest.approx(7 / 8)


def test_a_prediction_table_is_written_and_read_by_its_one_column_list(monkeypatch, tmp_path):
    """An empty finding stays "" (not NaN), the columns come in the table's order, and a file that lacks one is
    one error naming it."""
    from coronet.errors import DataError
    from coronet.evaluation import tables

    monkeypatch.chdir(tmp_path)
    films = pd.DataFrame({"id": ["0007", "b"], "label": ["covid", "normal"], "source": ["x", "y"],
                          "finding": ["", "No Finding"], "age": ["", "41"]})
    probabilities = np.array([[0.7, 0.1, 0.1, 0.1], [0.2, 0.5, 0.2, 0.1]])
    tables.CONTROLS.write(films, probabilities, CLASSES)
    read = tables.CONTROLS.read(CLASSES)
    assert list(read.columns) == ["id", "label", "source", "finding", "predicted", *(f"p_{c}" for c in CLASSES)]
    assert read["id"].tolist() == ["0007", "b"] and read["finding"].tolist() == ["", "No Finding"]
    assert read["predicted"].tolist() == [CLASSES[0], CLASSES[1]] and read[f"p_{CLASSES[0]}"].tolist() == [0.7, 0.2]
    read.drop(columns=f"p_{CLASSES[1]}").to_csv(tables.CONTROLS.path, index=False)
    with pytest.raises(DataError, match=f"metrics/controls.csv lacks the columns p_{CLASSES[1]}"):
        tables.CONTROLS.read(CLASSES)
