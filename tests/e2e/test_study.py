"""End to end: the shortcut study's experiments queued and run two at a time (`dvc queue start -j 2`) against
one SQLite store, its table, `coronet compare`, and what the demo then suggests (`dvc exp apply` with
params.yaml kept, `dvc metrics show`, `dvc plots show` without a network)."""

from __future__ import annotations

import json
import os
import re

import pytest

from conftest import project_copy, run_tool
from coronet import paths
from coronet.experiments import study
from coronet.records import EvidenceRecord, HeadlineRecord

pytestmark = pytest.mark.cost(360)  # seconds in make test (2 cores): the slowest files start first

VARIANTS = ("nuisance", "mixing")


@pytest.fixture(scope="module")
def studied(pipeline, tmp_path_factory):
    """The study of two mitigations, one epoch each, on a copy of the shared pipeline (its data stages come
    from the run cache)."""
    root = tmp_path_factory.mktemp("study")
    # the stress tests the table reports (the full set is test_pipeline's, on the shared run)
    project = project_copy(pipeline, root / "repo", {"train.epochs": 1, "evaluate.stress.transforms": {
        study.FRAME[0]: [float(study.FRAME[1])], "lungs_removed": [0.7]}})
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "PYTHONPATH": str(project / "src")}
    result = run_tool(project, "coronet", "study", "--settings", "params", "--only", ",".join(VARIANTS), "-j", "2",
                      env=env, timeout=1500)
    return project, env, result


def test_both_experiments_ran_side_by_side_and_are_complete(studied):
    import mlflow

    project, env, result = studied
    assert "database is locked" not in result.stdout + result.stderr
    # it watched them run (it used to wait, silent, inside `dvc queue start` until the workers had finished)
    progress = [line for line in result.stdout.splitlines() if re.match(r"\[\s*\d+ s\]", line)]
    assert any("running" in line for line in progress), result.stdout
    prefix = re.search(r"queued (study-\d{8}-\d{6})-", result.stdout)[1]
    shown = json.loads(run_tool(project, "dvc", "exp", "show", "--json", env=env).stdout)
    experiments = {e["name"]: e for commit in shown for e in (commit.get("experiments") or [])}
    names = [f"{prefix}-{v}" for v in VARIANTS]
    assert set(names) <= set(experiments)
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("coronet").experiment_id])}
    for name in names:
        run = runs[name]
        assert run.info.status == "FINISHED" and "test/accuracy" in run.data.metrics, name
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss/train")] == [1]
        assert len(run.inputs.dataset_inputs) == 3 and any(v.run_id == run.info.run_id for v in
                                                            client.search_model_versions("name = 'coronet'"))
    assert runs[names[0]].data.params["train.nuisance.frame.p"] == "0.5"
    mlflow.set_tracking_uri(None)
    # the pipeline said, once in a run, that two experiments shared the SQLite store
    logs = [run_tool(project, "dvc", "queue", "logs", name, env=env).stdout for name in names]
    assert any("note: 2 experiments write to sqlite:///" in log for log in logs)


def test_the_study_table_shows_each_variant_from_its_own_outputs(studied):
    project, env, result = studied
    header = next(line for line in result.stdout.splitlines() if line.lstrip().startswith("experiment"))
    for column in ("accuracy (95% CI)", "covid recall", "controls called covid (n)", "20% frame: to covid",
                   "lungs removed (chance)", "probe AUC", "external covid sens", "external spec"):
        assert column in header, column
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.lstrip().startswith("study-")}
    assert len(rows) == 2
    shown = json.loads(run_tool(project, "dvc", "exp", "show", "--json", env=env).stdout)
    for name, line in rows.items():
        rev = next(e["revs"][0]["rev"] for commit in shown for e in (commit.get("experiments") or []) if e["name"] == name)
        evidence = study.read(rev, EvidenceRecord, paths.EVIDENCE, str(project))
        assert f"{100 * evidence.accuracy:.0f}%" in line
        assert f"n={evidence.controls['called_screening']['n']}" in line
        external = evidence.external  # a hospital the model never saw, in two more columns
        assert f"n={external['sensitivity']['n']}" in line and f"n={external['specificity']['n']}" in line
    compared = run_tool(project, "coronet", "compare", env=env).stdout
    assert "Shortcut study" in compared and all(name in compared for name in rows)


def test_after_applying_an_experiment_the_suggested_commands_show_its_results(studied):
    """What `make demo` does after its experiment: its outputs in the workspace, params.yaml as committed."""
    from coronet.experiments import demo

    project, env, result = studied
    name = next(line.split()[0] for line in result.stdout.splitlines() if line.lstrip().startswith("study-"))
    params = (project / "params.yaml").read_text()
    cwd = os.getcwd()
    os.chdir(project)
    try:
        assert demo.bring_in(name)
    finally:
        os.chdir(cwd)
    assert (project / "params.yaml").read_text() == params
    rev = next(e["revs"][0]["rev"] for commit in json.loads(run_tool(project, "dvc", "exp", "show", "--json").stdout)
               for e in (commit.get("experiments") or []) if e["name"] == name)
    applied = json.loads((project / "metrics/metrics.json").read_text())
    assert applied == study.read(rev, HeadlineRecord, paths.HEADLINE, str(project)).to_json()
    shown = run_tool(project, "dvc", "metrics", "show", "--json").stdout
    # DVC 3's JSON names the workspace "" (dvc exp show's table calls it "workspace")
    assert json.loads(shown)[""]["data"]["metrics/metrics.json"]["data"]["accuracy"] == applied["accuracy"]
    data = run_tool(project, "dvc", "metrics", "show", "metrics/data.json").stdout
    assert "images.train.total" in data
    run_tool(project, "python", "-m", "coronet.experiments.offline_plots", env=env)  # what make venv does
    run_tool(project, "dvc", "plots", "show", env=env)
    page = (project / "dvc_plots/index.html").read_text()
    assert "cdn.jsdelivr" not in page and "window.vegaEmbed=" in page and page.count("vegaEmbed('#") >= 5
    assert "What each model was trained on" in page  # DVC's data plots cannot say it: the page says where it is
