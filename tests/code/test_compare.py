"""Code tier: `coronet compare` keeps only the params that differ and shows the headline metrics."""

from __future__ import annotations

from coronet.compare import comparison, short_names, shown_metrics


def test_only_differing_params_and_headline_metrics_are_shown():
    rows = [
        {"rev": "workspace", "Experiment": None, "train.epochs": 80},
        {"rev": "abc1234def", "Experiment": None, "train.epochs": 80, "train.learning_rate": 0.0001, "seed": 42,
         "metrics.json:accuracy": "!", "class_groups.pneumonia": "['a', 'b']"},
        {"rev": "9f9f9f9f", "Experiment": "exp-1", "train.epochs": 20, "train.learning_rate": 0.0001, "seed": 42,
         "metrics.json:accuracy": 0.84615, "n_test": 26.0, "normal_vs_rest.sensitivity": 0.5,
         "class_groups.pneumonia": "None"},
    ]
    frame = comparison(rows, ["train.epochs", "train.learning_rate", "seed", "class_groups.pneumonia"],
                       shown_metrics("normal"))
    assert list(frame["experiment"]) == ["abc1234", "exp-1"]  # the workspace row is left out
    assert list(frame["accuracy"]) == ["-", "0.846"] and list(frame["n test"]) == ["-", "26"]
    assert list(frame["normal sens"]) == ["-", "0.500"]
    assert "learning_rate" not in frame and "seed" not in frame  # the same everywhere
    assert list(frame["epochs"]) == ["80", "20"] and list(frame["pneumonia"]) == ["a+b", "-"]


def test_short_names_stay_unique():
    names = short_names(["train.augment.zoom", "train.epochs", "download.covid.sha256", "download.kermany.sha256"])
    assert names == {"train.augment.zoom": "zoom", "train.epochs": "epochs", "download.covid.sha256": "covid.sha256",
                     "download.kermany.sha256": "kermany.sha256"}
