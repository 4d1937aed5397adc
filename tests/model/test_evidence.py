"""Model tier: intervals, calibration, breakdowns and the confound probe against values worked out
independently of the code."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from conftest import CLASSES
from coronet.data.split import leakage_counts
from coronet.evaluation.calibration import brier_score, expected_calibration_error, reliability_bins
from coronet.evaluation.confounds import age_band, breakdown, source_probe
from coronet.evaluation.intervals import bootstrap, wilson


def test_wilson_against_the_closed_form():
    assert wilson(20, 20) == pytest.approx({"low": 0.8389, "high": 1.0}, abs=1e-4)  # the textbook value
    z = 1.959963984540054  # 97.5% normal quantile
    k, n = 7, 30
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson(k, n) == pytest.approx({"low": centre - half, "high": centre + half}, abs=1e-9)  # float64 rounding
    assert wilson(0, 0) is None


def test_bootstrap_accuracy_matches_the_normal_approximation():
    n = 400
    right = np.array([True] * 320 + [False] * 80)
    accuracy = lambda rows: float(right[rows].mean())  # noqa: E731
    interval = bootstrap(n, {"accuracy": accuracy}, 2000, seed=1)["accuracy"]
    se = math.sqrt(0.8 * 0.2 / n)  # 0.02
    # A 2.5% percentile of 2000 resamples moves by about sqrt(0.025 * 0.975 / 2000) / density ~ 0.003 from run to
    # run, and the normal approximation is off by about as much at n = 400: 0.01 holds both.
    assert interval["low"] == pytest.approx(0.8 - 1.96 * se, abs=0.01)
    assert interval["high"] == pytest.approx(0.8 + 1.96 * se, abs=0.01)
    assert bootstrap(n, {"accuracy": accuracy}, 200, seed=1) == bootstrap(n, {"accuracy": accuracy}, 200, seed=1)


def hand_made() -> pd.DataFrame:
    rows = [  # label, predicted probabilities (covid, normal, bacterial, viral)
        ("covid", [0.9, 0.1, 0.0, 0.0]),    # confidence 0.9, right
        ("normal", [0.9, 0.1, 0.0, 0.0]),   # confidence 0.9, wrong
        ("normal", [0.2, 0.6, 0.2, 0.0]),   # confidence 0.6, right
        ("pneumonia_viral", [0.0, 0.0, 0.4, 0.6]),  # confidence 0.6, right
    ]
    frame = pd.DataFrame({"label": [r[0] for r in rows]})
    for i, c in enumerate(CLASSES):
        frame[f"p_{c}"] = [r[1][i] for r in rows]
    frame["predicted"] = [CLASSES[int(np.argmax(r[1]))] for r in rows]
    return frame


def test_ece_and_brier_by_hand():
    frame = hand_made()
    # bin (0.8, 0.9]: confidence 0.9, accuracy 0.5, 2 of 4; bin (0.5, 0.6]: 0.6 vs 1.0, 2 of 4
    assert expected_calibration_error(frame, CLASSES, 10) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    # squared distances: 0.02, 0.81 + 0.81 = 1.62, 0.04 + 0.16 + 0.04 = 0.24, 0.16 + 0.16 = 0.32
    assert brier_score(frame, CLASSES) == pytest.approx((0.02 + 1.62 + 0.24 + 0.32) / 4)
    table = reliability_bins(frame, CLASSES, 10)
    assert table["count"].sum() == 4 and table.loc[8, "count"] == 2 and table.loc[5, "count"] == 2


def test_age_bands_never_invent_ages():
    assert age_band("65") == "60-79" and age_band(17) == "0-17" and age_band("65", "1-5 by provenance") == "60-79"
    assert age_band("", "1-5 by provenance") == "1-5 by provenance"  # a cohort's ages, where files carry none
    assert age_band("") == "unknown" and age_band("n/a") == "unknown"


def test_breakdown_by_group():
    frame = pd.DataFrame({"label": ["covid", "covid", "normal"], "predicted": ["covid", "normal", "normal"],
                          "source": ["a", "a", "b"]})
    out = breakdown(frame, "source", CLASSES)
    assert out == {"a": {"n": 2, "accuracy": 0.5, "recall": {"covid": 0.5}},
                   "b": {"n": 1, "accuracy": 1.0, "recall": {"normal": 1.0}}}


def test_probe_detects_a_planted_source_and_not_an_absent_one():
    rng = np.random.default_rng(0)
    source = np.array(["covid"] * 60 + ["kermany"] * 60)
    noise = rng.normal(size=(120, 8))
    planted = noise.copy()
    planted[:60, 0] += 3.0  # e.g. one collection's images are larger
    found = source_probe(planted, source, 5, seed=0)
    absent = source_probe(noise, source, 5, seed=0)
    assert found["auc"] > 0.95 and found["balanced_accuracy"] > 0.9
    assert 0.3 < absent["auc"] < 0.7 and absent["balanced_accuracy"] < 0.7
    assert source_probe(noise, np.array(["kermany"] * 120), 5, seed=0) == {
        "not_computed": "every image comes from one source (kermany)"}
    third = np.array(["a", "b", "c"] * 40)  # a third source keeps the probe on (one against the rest)
    planted3 = noise.copy()
    planted3[:, 0] += 4 * (third == "c")
    assert source_probe(planted3, third, 5, seed=0)["auc"] > 0.7


def test_leakage_counts():
    frame = pd.DataFrame({"split": ["train", "test", "test"], "patient_id": ["p1", "p1", "p2"],
                          "sha256": ["a", "b", "a"]})
    assert leakage_counts(frame) == {"patients_shared": 1, "images_shared": 1}
