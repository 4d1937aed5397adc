"""Is it COVID-19 or the source? The images only ever scored, never trained on: the same-source controls
and the external sources, one implementation for both (rates with Wilson intervals, the comparison, the
warning).

The COVID-19 collection's X-rays of other findings share its look (figures from papers, adults) without
COVID-19. A model that learned the disease calls few of them COVID; a model that learned the source
calls most of them COVID. Their rate is set beside the rate at which the other source's non-COVID test
images are called COVID, and the controls whose finding maps to a class are scored on that class.

An external source (params merge.sources.<name>.role: external) is a hospital the model never saw: its
COVID-19 films give the sensitivity, its other films the specificity, set beside the test split's own.

Films only scored against a class group (params merge.sources.<name>.scored: NIH's adult pneumonias, which
have no bacterial/viral subtype) give the share called the screened class (an adult's pneumonia called
COVID-19: the confusion a clinician fears most) and the share called a class of their group.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from coronet.data.split import CONTROL, EXTERNAL, SCORED
from coronet.evaluation.intervals import wilson


def control_rows(images: pd.DataFrame) -> np.ndarray:
    """Which rows of ``images`` (with split and cohort) are scored as controls: the control split, and the
    test part of the controls mixed into the pool (params merge.controls.role: train)."""
    return ((images["split"] == CONTROL) | ((images["cohort"] == "mixed") & (images["split"] == "test"))).to_numpy()


def external_rows(images: pd.DataFrame) -> np.ndarray:
    """Which rows of ``images`` are an external source's (the external split)."""
    return (images["split"] == EXTERNAL).to_numpy()


def scored_rows(images: pd.DataFrame) -> np.ndarray:
    """Which rows of ``images`` are only scored against a class group (the scored split)."""
    return (images["split"] == SCORED).to_numpy()


def rate(hits: pd.Series, level: float) -> dict[str, Any]:
    n, k = len(hits), int(hits.sum())
    return {"n": n, "called": k, "rate": (k / n) if n else None, "interval": wilson(k, n, level)}


def clearly_above(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether rate ``a`` lies above rate ``b`` beyond what their sizes allow: their intervals do not meet."""
    return bool(a["n"] and b["n"] and a["interval"]["low"] > b["interval"]["high"])


def screening_rates(frame: pd.DataFrame, screening: str, level: float) -> dict[str, dict[str, Any]]:
    """Sensitivity (films of the screened class called it) and specificity (the others not called it)."""
    positive = frame["label"] == screening
    return {"sensitivity": rate(frame.loc[positive, "predicted"] == screening, level),
            "specificity": rate(frame.loc[~positive, "predicted"] != screening, level)}


def summarize_external(external: pd.DataFrame, test: pd.DataFrame, screening: str | None, classes: list[str],
                       level: float) -> dict[str, Any]:
    """``external``: the external sources' predictions (label, source, predicted); ``test``: the test split's.
    Per source: the screened class's sensitivity and specificity, each other class's films called that class
    and called the screened one, and the distribution of answers; pooled over the sources the two headline
    rates, beside the test split's own."""
    if screening is None:
        return {"not_computed": "params.yaml screening_class is not set: there is no class to be called"}
    if external.empty:
        return {"not_computed": "no external source (params merge.sources: none has role external, or its "
                                "images were all turned down; see data/interim/rejected.csv)"}
    by_source = {}
    for source, part in external.groupby("source", sort=True):
        films = {label: {"n": len(films), f"called_{label}": rate(films["predicted"] == label, level),
                         f"called_{screening}": rate(films["predicted"] == screening, level)}
                 for label, films in part.groupby("label", sort=True) if label != screening}
        by_source[source] = {**screening_rates(part, screening, level), "by_class": films,
                             "answers": {c: int((part["predicted"] == c).sum()) for c in classes}}
    return {"screening_class": screening, **screening_rates(external, screening, level),
            "internal": screening_rates(test, screening, level), "by_source": by_source}


def free_rates(summary: dict[str, Any]) -> list[str]:
    """A rate that says nothing about the model's skill, in plain words: a specificity earned by never answering
    the screened class on those films, a sensitivity earned by always answering it."""
    if "not_computed" in summary:
        return []
    name, notes = summary["screening_class"], []
    answers = {c: 0 for c in next(iter(summary["by_source"].values()))["answers"]}
    for part in summary["by_source"].values():
        for c, k in part["answers"].items():
            answers[c] += k
    total = sum(answers.values())
    if total and answers[name] == 0 and summary["specificity"]["n"]:
        notes.append(f"its specificity is free: the model answered {name} for none of these {total} films, so it "
                     f"cannot have called a non-{name} film {name}; only the sensitivity says anything")
    if total and answers[name] == total and summary["sensitivity"]["n"]:
        notes.append(f"its sensitivity is free: the model answered {name} for every one of these {total} films; "
                     "only the specificity says anything")
    return notes


def external_warnings(summary: dict[str, Any]) -> list[str]:
    """A warning for each headline rate whose external interval lies below the test split's."""
    if "not_computed" in summary:
        return []
    name, found = summary["screening_class"], []
    for what in ("sensitivity", "specificity"):
        outside, inside = summary[what], summary["internal"][what]
        if clearly_above(inside, outside):
            found.append(f"{name} {what} on the external source(s) is {outside['rate']:.0%} "
                         f"({outside['interval']['low']:.0%}-{outside['interval']['high']:.0%}, n={outside['n']}) "
                         f"against {inside['rate']:.0%} on the test split: the model does not carry to a hospital "
                         "it never saw")
    return found


def summarize(controls: pd.DataFrame, test: pd.DataFrame, screening: str | None, level: float) -> dict[str, Any]:
    """``controls``: the scored controls (label may be "", finding, predicted); ``test``: the test split's
    predictions with source and cohort. Everything as nested dicts for evidence.json."""
    if screening is None:
        return {"not_computed": "params.yaml screening_class is not set: there is no class to be called"}
    if controls.empty:
        return {"not_computed": "no same-source controls (params merge.controls.role off, or none in the data)"}
    called = controls["predicted"] == screening
    control_sources = set(controls["source"])
    others = test[(~test["source"].isin(control_sources)) & (test["label"] != screening)]
    mapped = controls[controls["label"] != ""]
    right = mapped["predicted"] == mapped["label"]
    return {
        "screening_class": screening,
        "sources": sorted(control_sources),
        "called_screening": rate(called, level),
        "by_finding": {finding: rate(part["predicted"] == screening, level)
                       for finding, part in controls.groupby("finding", sort=True)},
        "other_source_called_screening": rate(others["predicted"] == screening, level),
        "mapped": {**rate(right, level), "by_class": {label: rate(part["predicted"] == label, level)
                                                      for label, part in mapped.groupby("label", sort=True)}},
    }


def verdict(summary: dict[str, Any]) -> str:
    """One sentence for people: how the control rate compares with the other source's rate."""
    if "not_computed" in summary:
        return f"Not computed: {summary['not_computed']}."
    c, o = summary["called_screening"], summary["other_source_called_screening"]
    name = summary["screening_class"]
    ci = f"{c['interval']['low']:.0%}-{c['interval']['high']:.0%}"
    line = (f"{c['called']} of {c['n']} same-source controls ({c['rate']:.0%}, 95% interval {ci}) were called "
            f"{name}")
    if o["n"]:
        line += (f", against {o['called']} of {o['n']} non-{name} test images of the other source "
                 f"({o['rate']:.0%}, {o['interval']['low']:.0%}-{o['interval']['high']:.0%})")
    if clearly_above(c, o):
        return line + (f". The controls have no {name} yet are called {name} far more often: the model reads the "
                       "source's look, not (only) the disease.")
    return line + (". The two rates' intervals overlap: these controls give no evidence that the model calls the "
                   f"source {name}, within what this many images can show.")


def summarize_scored(scored: pd.DataFrame, test: pd.DataFrame, screening: str | None, groups: dict[str, list[str]],
                     classes: list[str], level: float) -> dict[str, Any]:
    """``scored``: the films only scored (source, finding, group, predicted); ``test``: the test split's
    predictions. Per group: the share called the screened class and the share called a class of the group,
    each with its Wilson interval and n, the answers, the sources; beside them the test split's own rate of
    films not of the screened class called it."""
    if screening is None:
        return {"not_computed": "params.yaml screening_class is not set: there is no class to be called"}
    if scored.empty:
        return {"not_computed": "no film is only scored (params merge.sources.<name>.scored, with that source "
                                "switched on: download.archives.<name>.enabled)"}
    by_group = {}
    for group, part in scored.groupby("group", sort=True):
        members = groups.get(group)
        by_group[group] = {"n": len(part), "sources": sorted(set(part["source"])),
                           "called_screening": rate(part["predicted"] == screening, level),
                           "called_group": rate(part["predicted"].isin(members), level) if members else None,
                           "members": members or [],
                           "answers": {c: int((part["predicted"] == c).sum()) for c in classes}}
    internal = test[test["label"] != screening]
    return {"screening_class": screening, "by_group": by_group,
            "internal_called_screening": rate(internal["predicted"] == screening, level)}


def scored_warnings(summary: dict[str, Any]) -> list[str]:
    """A warning for each group whose films are called the screened class clearly more often than the test
    split's films of other classes are."""
    if "not_computed" in summary:
        return []
    name, inside, found = summary["screening_class"], summary["internal_called_screening"], []
    for group, entry in summary["by_group"].items():
        called = entry["called_screening"]
        if clearly_above(called, inside):
            found.append(f"{called['rate']:.0%} of the {group} films only scored ({', '.join(entry['sources'])}; "
                         f"{called['interval']['low']:.0%}-{called['interval']['high']:.0%}, n={called['n']}) are "
                         f"called {name}, against {inside['rate']:.0%} of the test split's other films: the model "
                         f"calls an adult's {group} {name}")
    return found
