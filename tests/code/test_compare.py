"""Code tier: `coronet compare` keeps only the params that differ and shows the headline metrics."""

from __future__ import annotations

from coronet.experiments.compare import comparison, ignored, short_names, shown_metrics


def test_only_differing_params_and_headline_metrics_are_shown():
    rows = [
        {"rev": "workspace", "Experiment": None, "train.epochs": 80},
        {"rev": "abc1234def", "Experiment": None, "train.epochs": 80, "train.learning_rate": 0.0001, "seed": 42,
         "metrics.json:accuracy": "!", "class_groups.pneumonia": "['a', 'b']"},
        {"rev": "9f9f9f9f", "Experiment": "exp-1", "train.epochs": 20, "train.learning_rate": 0.0001, "seed": 42,
         "metrics.json:accuracy": 0.84615, "n_test": 26.0, "normal_sensitivity": 0.5, "normal_specificity": 0.75,
         "per_class.normal.support": 6.0, "class_groups.pneumonia": "None"},
    ]
    frame = comparison(rows, ["train.epochs", "train.learning_rate", "seed", "class_groups.pneumonia"],
                       shown_metrics("normal"))
    assert list(frame["experiment"]) == ["abc1234", "exp-1"]  # the workspace row is left out
    assert list(frame["accuracy"]) == ["-", "0.846 (26)"]  # each rate with the films it is of
    assert list(frame["normal sens"]) == ["-", "0.500 (6)"] and list(frame["normal spec"]) == ["-", "0.750 (20)"]
    assert list(frame["ctrl normal"]) == ["-", "-"]  # not computed: no n either
    assert "learning_rate" not in frame and "seed" not in frame  # the same everywhere
    assert list(frame["epochs"]) == ["80", "20"] and list(frame["pneumonia"]) == ["a+b", "-"]


def test_short_names_stay_unique():
    names = short_names(["train.augment.zoom", "train.epochs", "download.archives.covid.url",
                         "download.archives.kermany.url"])
    assert names == {"train.augment.zoom": "zoom", "train.epochs": "epochs", "download.archives.covid.url": "covid.url",
                     "download.archives.kermany.url": "kermany.url"}


def test_checksum_pins_of_any_source_are_not_choices():
    assert ignored("download.archives.toy.sha256") and ignored("download.archives.covid.sha256")
    assert not ignored("download.archives.covid.url") and not ignored("train.epochs")


def test_outside_a_repository_or_with_an_unknown_revision_is_one_error_line(tmp_path, monkeypatch, capsys):
    """`coronet compare` outside git, or `--rev no-such-rev`, printed 60-line tracebacks."""
    from conftest import make_project
    from coronet.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["compare"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot list experiments") and len(err.strip().splitlines()) == 1
    monkeypatch.chdir(make_project(tmp_path / "repo"))
    assert main(["compare", "--rev", "no-such-rev"]) == 2
    err = capsys.readouterr().err
    assert "no-such-rev" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_study_starts_the_queues_workers_again_when_one_died(monkeypatch, capsys):
    """DVC's second queue worker died on its file broker (JSONDecodeError) and the study ran the rest one at a
    time; it now asks `dvc queue start` (which spawns only missing workers) while experiments wait."""
    from coronet.experiments import study

    calls = []
    monkeypatch.setattr(study, "dvc", lambda *args, check=True: calls.append(args))
    table = "Task  Name  Created  Status\nabc  s-nih  10:45 PM  Queued\n\nWorker status: 1 active, 0 idle\n"
    study.revive(table, jobs=2, waiting=1)
    assert calls == [("queue", "start", "-j", "2")] and "starting them again" in capsys.readouterr().out
    study.revive(table.replace("1 active", "2 active"), jobs=2, waiting=1)  # both alive
    study.revive(table, jobs=2, waiting=0)  # nothing waits: one worker is enough
    assert len(calls) == 1
