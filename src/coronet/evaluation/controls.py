"""Is it COVID-19 or the source? The same-source controls, scored.

The COVID-19 collection's X-rays of other findings share its look (figures from papers, adults) without
COVID-19. A model that learned the disease calls few of them COVID; a model that learned the source
calls most of them COVID. Their rate is set beside the rate at which the other source's non-COVID test
images are called COVID, and the controls whose finding maps to a class are scored on that class.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from coronet.data.split import CONTROL
from coronet.evaluation.intervals import wilson


def control_rows(images: pd.DataFrame) -> np.ndarray:
    """Which rows of ``images`` (with split and cohort) are scored as controls: the control split, and the
    test part of the controls mixed into the pool (params merge.controls.role: train)."""
    return ((images["split"] == CONTROL) | ((images["cohort"] == "mixed") & (images["split"] == "test"))).to_numpy()


def rate(hits: pd.Series, level: float) -> dict[str, Any]:
    n, k = len(hits), int(hits.sum())
    return {"n": n, "called": k, "rate": (k / n) if n else None, "interval": wilson(k, n, level)}


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
    if o["n"] and c["interval"]["low"] > o["interval"]["high"]:
        return line + (f". The controls have no {name} yet are called {name} far more often: the model reads the "
                       "source's look, not (only) the disease.")
    return line + (". The two rates' intervals overlap: these controls give no evidence that the model calls the "
                   f"source {name}, within what this many images can show.")
