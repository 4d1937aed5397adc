"""End to end: the class list of params.yaml in another order; every output follows it."""

from __future__ import annotations

import json

import pandas as pd

from conftest import TINY, make_project, run_tool

REVERSED = ["pneumonia_viral", "pneumonia_bacterial", "normal", "covid"]


def test_every_output_follows_the_params_class_order(tmp_path):
    project = make_project(tmp_path / "repo", {**TINY, "classes": REVERSED, "train.epochs": 1,
                                               "class_groups": {"pneumonia": REVERSED[:2], "normal": ["normal"],
                                                                "covid": ["covid"]},
                                               "screening_class": "normal"})
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    run_tool(project, "dvc", "repro", "evaluate", env=env)

    assert json.loads((project / "models/run.json").read_text())["model"]["classes"] == REVERSED
    predictions = pd.read_csv(project / "metrics/predictions.csv")
    assert [c.removeprefix("p_") for c in predictions.columns if c.startswith("p_")] == REVERSED
    headline = json.loads((project / "metrics/metrics.json").read_text())
    assert list(headline["per_class"]) == REVERSED and list(headline["confusion_matrix"]) == REVERSED
    assert all(list(row) == REVERSED for row in headline["confusion_matrix"].values())
    assert "normal_vs_rest" in headline and "covid_vs_rest" not in headline  # the screened class of params
    evidence = json.loads((project / "metrics/evidence.json").read_text())
    assert list(evidence["grouped"]["confusion_matrix"]) == ["pneumonia", "normal", "covid"]
    assert list(evidence["roc_auc"]) == REVERSED and list(evidence["intervals"]["per_class"]) == REVERSED
    assert sorted(p.stem for p in (project / "metrics/curves/roc").glob("*.csv")) == sorted(REVERSED)
    card = (project / "metrics/model_card.md").read_text()
    rows = [line.split("|")[1].strip() for line in card.splitlines() if line.startswith("| ")
            and line.split("|")[1].strip() in REVERSED]
    assert rows[:4] == REVERSED  # the per-class table, in params order
    assert "normal recall (sensitivity)" in card and "3-class accuracy (pneumonia = pneumonia_viral + " in card

    image = next((project / "data/processed/images").glob("*.png"))
    out = run_tool(project, "coronet", "predict", str(image), "--format", "csv", env=env).stdout.splitlines()[0]
    assert out.split(",")[2:6] == [f"p_{c}" for c in REVERSED]
    assert out.split(",")[6:10] == ["predicted_group", "pg_pneumonia", "pg_normal", "pg_covid"]


def test_a_grouping_that_names_an_unknown_class_is_one_error_line(tmp_path):
    project = make_project(tmp_path / "repo", {**TINY, "class_groups": {"lung": ["pneumonia"], "rest": ["covid"]}})
    failed = run_tool(project, "python", "stages/evaluate.py", check=False)
    assert failed.returncode == 1
    assert failed.stderr.strip() == ("error: params.yaml: class_groups names ['pneumonia'], which are not in classes "
                                     "['covid', 'normal', 'pneumonia_bacterial', 'pneumonia_viral']")
