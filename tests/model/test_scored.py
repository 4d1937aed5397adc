"""Model tier, known answers: a model that reads age (child versus adult) calls adults' normal and pneumonia films
COVID-19, and the evaluation says so; a model that reads the finding does not. The films are the shapes the
evaluate stage hands the evaluation (its CSVs); the rules stand in for what a model may have learned."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import CLASSES
from coronet.evaluation.controls import scored_warnings, summarize_external, summarize_scored
from coronet.evaluation.metrics import headline

GROUPS = {"covid": ["covid"], "normal": ["normal"], "pneumonia": CLASSES[2:]}


def films() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A test split of children's films (normal, pneumonias) and adults' COVID-19 films, as the confounded sources
    give it; 12 adult pneumonia films only scored (NIH's, no subtype); an external hospital's adult films."""
    test = pd.DataFrame({"label": ["covid"] * 10 + ["normal"] * 10 + ["pneumonia_bacterial"] * 5
                         + ["pneumonia_viral"] * 5, "age": [60] * 10 + [3] * 20, "finding": [
                             "covid"] * 10 + ["normal"] * 10 + ["bacterial"] * 5 + ["viral"] * 5})
    scored = pd.DataFrame({"source": "nih", "group": "pneumonia", "finding": "Pneumonia", "age": [45] * 12})
    external = pd.DataFrame({"source": "hospital", "label": ["covid"] * 8 + ["normal"] * 18, "age": 55,
                             "finding": ["covid"] * 8 + ["normal"] * 18})
    return test, scored, external


def age_reader(frame: pd.DataFrame) -> list[str]:
    return ["covid" if age >= 18 else "normal" for age in frame["age"]]


def finding_reader(frame: pd.DataFrame) -> list[str]:
    answer = {"covid": "covid", "normal": "normal", "bacterial": "pneumonia_bacterial", "viral": "pneumonia_viral",
              "Pneumonia": "pneumonia_viral"}
    return [answer[f] for f in frame["finding"]]


def evaluate(rule) -> tuple[dict, dict, list[str]]:
    test, scored, external = films()
    for frame in (test, scored, external):
        frame["predicted"] = rule(frame)
    summary = summarize_scored(scored, test, "covid", GROUPS, CLASSES, 0.95)
    outside = summarize_external(external, test, "covid", CLASSES, 0.95)
    return summary, outside, scored_warnings(summary)


def test_a_model_that_reads_age_calls_every_adult_film_covid_and_the_evaluation_says_so():
    summary, external, warnings = evaluate(age_reader)
    pneumonia = summary["by_group"]["pneumonia"]
    assert (pneumonia["called_screening"]["called"], pneumonia["called_screening"]["n"]) == (12, 12)
    assert pneumonia["called_group"]["called"] == 0 and pneumonia["answers"]["covid"] == 12
    assert summary["internal_called_screening"]["called"] == 0  # on the confounded test split it looks perfect
    assert len(warnings) == 1 and "100% of the pneumonia films only scored (nih" in warnings[0]
    assert "calls an adult's pneumonia covid" in warnings[0]
    assert (external["specificity"]["called"], external["specificity"]["n"]) == (0, 18)  # adults' normal films
    assert external["sensitivity"]["rate"] == 1.0  # earned by always answering covid for adults
    _, details = headline({"accuracy": 1.0, "macro_avg": {"f1": 1.0}, "screening": {"class": "covid"}, "grouped": {},
                           "weighted_avg": {"f1": 1.0}, "n_test": 30, "per_class": {}, "confusion_matrix": {}},
                          {"scored": summary, "calibration": {"ece": 0.0}, "controls": {}, "external": {}})
    assert details.scored == {"pneumonia_covid_rate": 1.0, "pneumonia_covid_rate_n": 12, "pneumonia_group_rate": 0.0,
                              "pneumonia_group_rate_n": 12}


def test_a_model_that_reads_the_finding_calls_them_pneumonia_and_raises_nothing():
    summary, external, warnings = evaluate(finding_reader)
    pneumonia = summary["by_group"]["pneumonia"]
    assert pneumonia["called_screening"]["called"] == 0 and pneumonia["called_group"]["called"] == 12
    assert warnings == []
    assert external["specificity"]["rate"] == 1.0 and external["sensitivity"]["rate"] == 1.0


def test_no_scored_film_or_no_screening_class_is_said_not_computed():
    test, scored, _ = films()
    test["predicted"] = finding_reader(test)
    assert "no film is only scored" in summarize_scored(scored.iloc[:0], test, "covid", GROUPS, CLASSES, 0.95)[
        "not_computed"]
    assert "screening_class is not set" in summarize_scored(scored, test, None, GROUPS, CLASSES, 0.95)["not_computed"]
    scored["predicted"] = "normal"
    unnamed = summarize_scored(scored.assign(group="unknown"), test, "covid", GROUPS, CLASSES, 0.95)
    assert unnamed["by_group"]["unknown"]["called_group"] is None  # a group class_groups does not define


@pytest.mark.parametrize("rule", [age_reader, finding_reader])
def test_each_rate_has_its_wilson_interval_around_it(rule):
    summary, _, _ = evaluate(rule)
    for entry in summary["by_group"].values():
        for key in ("called_screening", "called_group"):
            r = entry[key]
            assert r["interval"]["low"] <= r["rate"] <= r["interval"]["high"] and r["n"] == 12


def test_a_specificity_earned_by_never_answering_covid_is_called_free():
    """The demo's 0/16 sensitivity with 16/16 specificity came from a model that never answers covid for that
    hospital; nothing said such a specificity is free."""
    from coronet.evaluation.controls import free_rates

    test, _, external = films()
    test["predicted"] = finding_reader(test)
    external["predicted"] = "normal"
    never = free_rates(summarize_external(external, test, "covid", CLASSES, 0.95))
    assert len(never) == 1 and "specificity is free: the model answered covid for none of these 26 films" in never[0]
    external["predicted"] = "covid"
    always = free_rates(summarize_external(external, test, "covid", CLASSES, 0.95))
    assert len(always) == 1 and "sensitivity is free" in always[0]
    external["predicted"] = finding_reader(external)
    assert free_rates(summarize_external(external, test, "covid", CLASSES, 0.95)) == []
