"""End to end: what the README tells a user to type, on the shared run: the commands after `make demo`,
and the baseline recipe a colleague pulls without rerunning."""

from __future__ import annotations

import json
import shlex

import pytest

from conftest import (
    CLASSES,
    ROOT,
    git,
    run_tool,
)

pytestmark = pytest.mark.cost(60)  # seconds in make test (2 cores): the slowest files start first

BASELINE_RECIPE = ("git add params.yaml dvc.lock metrics data models", 'git commit -m "baseline: first run"',
                   "make push")


def test_the_readmes_baseline_recipe_gives_a_colleague_everything_without_rerunning(pipeline_copy, tmp_path):
    """The README's recipe committed metrics.json and data.json only: a colleague's pull then missed the plots and
    history (cache: false outputs in neither git nor DVC), `dvc status` listed them deleted and `dvc repro --dry`
    retrained. Now: the recipe as the README gives it, push to a folder remote, a fresh clone pulls, `dvc status`
    is clean, nothing reruns, `dvc plots diff` works across two commits, and the pulled model predicts."""
    project = pipeline_copy.project
    readme = (ROOT / "README.md").read_text()
    assert all(command in readme for command in BASELINE_RECIPE)
    git(project, "reset", "-q", "HEAD~1")  # the run's results in the workspace, not yet committed: after make demo
    remote = tmp_path / "storage"
    run_tool(project, "dvc", "remote", "add", "--local", "--force", "--default", "storage", str(remote))
    for command in BASELINE_RECIPE:
        argv = shlex.split(command)
        if argv[0] == "git":
            git(project, *argv[1:])
        else:
            run_tool(project, "dvc", "push")  # make push: `dvc push` with this venv's tools
    assert git(project, "status", "--porcelain") == ""  # nothing the run wrote is left out of git or DVC
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    run_tool(clone, "dvc", "remote", "add", "--local", "--force", "--default", "storage", str(remote))
    run_tool(clone, "dvc", "pull")
    assert json.loads(run_tool(clone, "dvc", "status", "--json").stdout) == {}
    assert "Running stage" not in run_tool(clone, "dvc", "repro", "--dry").stdout
    assert (clone / "models/history.csv").is_file() and (clone / "metrics/figures/confusion_matrix.png").is_file()
    git(clone, "commit", "-q", "--allow-empty", "-m", "a later commit")
    diff = run_tool(clone, "dvc", "plots", "diff", "HEAD~1", "HEAD", "-o", str(tmp_path / "plots"))
    assert "Traceback" not in diff.stderr and (tmp_path / "plots/index.html").is_file()
    image = next((clone / "data/processed/images").glob("*.png"))
    predicted = run_tool(clone, "coronet", "predict", str(image), "--format", "json", env=pipeline_copy.env)
    assert json.loads(predicted.stdout)[0]["error"] == ""


def test_the_readme_commands_after_the_demo_work_as_written(pipeline, tmp_path, monkeypatch):
    """What the README tells a user to type after `make demo`, run on the shared pipeline as written
    (the cheap ones: the demo itself is CI's first command). `make` targets run their `coronet` commands."""
    import re

    from coronet.experiments.demo import write_samples

    project = pipeline.project
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Two commands")
    after_demo = readme[start:readme.index("\n## ", start + 1)]
    block = re.findall(r"```bash\n(.*?)```", after_demo, flags=re.S)[1]
    commands = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands[0] == ". .venv/bin/activate"
    monkeypatch.chdir(project)
    samples = write_samples(tmp_path / "samples")  # what the demo leaves for `coronet predict samples/`
    assert sorted(p.name for p in samples) == sorted(f"{c}.png" for c in CLASSES)
    (project / "samples").symlink_to(tmp_path / "samples")
    try:
        for command in commands[1:]:
            if command in {"make app", "make ui"}:  # servers: test_app.py starts and drives both
                continue
            argv = shlex.split(command.replace("make compare", "coronet compare"))
            done = run_tool(project, *argv, env={**pipeline.env, "COLUMNS": "120"})
            assert "Traceback" not in done.stderr, command
            if argv[:2] == ["coronet", "predict"]:
                rows = done.stdout.splitlines()
                assert len(rows) == 1 + len(CLASSES) and max(map(len, rows)) <= 120
                assert "SYNTHETIC images" in done.stderr
            if argv[:3] in (["dvc", "exp", "show"], ["dvc", "metrics", "show"]):  # no pager at 120 columns
                assert max(map(len, done.stdout.splitlines())) <= 120 and "covid_sensitivity" in done.stdout, command
            if argv[:2] == ["coronet", "compare"]:  # each rate with its n, and a legend that says so
                n_test = json.loads((project / "metrics/metrics.json").read_text())["n_test"]
                assert "(n: the films it is of)" in done.stdout and f"({n_test})" in done.stdout
    finally:
        (project / "samples").unlink()
