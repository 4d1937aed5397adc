"""Code tier: every module, script, ``coronet`` subcommand and make target that the Makefile, .ci/run and the
README's code blocks name exists and starts. A moved module once broke `make demo` on main while CI was green:
nothing checked the commands users type."""

from __future__ import annotations

import importlib.util
import re
import subprocess

import pytest

from conftest import ROOT
from coronet.cli import main

MODULE = re.compile(r"python[0-9.]*\s+-m\s+([A-Za-z_][\w.]*)")
SCRIPT = re.compile(r"python[0-9.]*\s+((?:stages|benchmarks)/[\w/]+\.py)")
SUBCOMMAND = re.compile(r"(?:^|[\s/;&(])coronet\s+([a-z][a-z-]*)")
TARGET = re.compile(r"(?:^|[\s;&(])make\s+([a-z][\w-]*)")


def readme_blocks() -> str:
    """The shell code blocks (```bash) of the README and the pages it links (docs/), where the commands a user
    copies live, without comments."""
    text = "\n".join(page.read_text() for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    blocks = "\n".join(re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, flags=re.S))
    return re.sub(r"(^|\s)#.*", "", blocks, flags=re.M)


def named(pattern: re.Pattern[str], *texts: str) -> set[str]:
    return {m for text in texts for m in pattern.findall(text)}


def sources() -> tuple[str, str, str]:
    return (ROOT / "Makefile").read_text(), (ROOT / ".ci/run").read_text(), readme_blocks()


def test_the_commands_are_found_where_users_meet_them():
    """The patterns find what they must (a pattern that matched nothing would pass everything below)."""
    makefile, ci, readme = sources()
    assert "coronet.experiments.demo" in named(MODULE, makefile)
    assert {"demo", "test"} <= named(TARGET, ci) and {"demo", "test", "compare", "app", "ui"} <= named(TARGET, readme)
    assert {"predict", "app", "study", "compare"} <= named(SUBCOMMAND, readme, makefile)
    assert ci.index("make demo") < ci.index("make test")  # the README's order: the demo, then the suite


@pytest.mark.parametrize("module", sorted(named(MODULE, *sources())))
def test_each_python_module_named_exists(module):
    assert importlib.util.find_spec(module) is not None, f"`python -m {module}` names no module"


@pytest.mark.parametrize("script", sorted(named(SCRIPT, *sources())))
def test_each_script_named_exists(script):
    assert (ROOT / script).is_file(), script


@pytest.mark.parametrize("command", sorted(named(SUBCOMMAND, *sources())))
def test_each_coronet_subcommand_named_answers_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0 and command in capsys.readouterr().out


@pytest.mark.parametrize("target", sorted(named(TARGET, *sources())))
def test_each_make_target_named_exists(target):
    """`make -n` prints the recipe without running it; an unknown target fails ("No rule to make target")."""
    done = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_make_server_on_a_busy_port_is_one_error_before_anything_starts(tmp_path):
    """With port 5000 taken, `make server` started PostgreSQL, exited 0 and pointed the
    user at the other service on that port."""
    import socket
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "coronet.tracking.team_server", "--port", str(port)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and f"127.0.0.1:{port} is in use" in done.stderr
    assert not (tmp_path / ".team-server").exists()  # PostgreSQL was never started


def test_coronet_ui_on_a_busy_port_is_one_error_line(tmp_path, monkeypatch, capsys):
    """`coronet ui` (make ui) on a port in use: one line naming the next port, before MLflow reads the store."""
    import socket

    (tmp_path / "mlflow.db").touch()  # a store MLflow has not made yet
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["ui", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and f"127.0.0.1:{port} is in use" in err and f"--port {port + 1}" in err


@pytest.mark.parametrize(("args", "says"), [
    (["study", "-j", "0"], "must be at least 1, got 0"),  # queued the experiments and waited forever
    (["app", "--port", "99999"], "must be a port number from 1 to 65535, got 99999"),  # a traceback
    (["app", "--max-images", "-1"], "must be at least 1, got -1"),  # then every request failed
    (["app", "--max-upload-mb", "-1"], "must be a finite number above 0, got -1.0"),
    (["app", "--max-upload-mb", "inf"], "must be a finite number above 0, got inf"),  # a traceback at launch
    (["ui", "--port", "0"], "must be a port number from 1 to 65535, got 0"),
])
def test_bad_command_line_values_are_a_usage_error(args, says, capsys):
    """Each was accepted and failed later (or never returned)."""
    with pytest.raises(SystemExit) as done:
        main(args)
    err = capsys.readouterr().err
    assert done.value.code == 2 and says in err and "Traceback" not in err


def test_make_pull_before_anyone_pushed_or_committed_says_so_in_one_line(tmp_path):
    """`make pull` pointed at a sibling folder that does not exist, and DVC answered with a page of missing files;
    in a clone of a commit that kept no run (no dvc.lock), DVC printed 17 warnings and "Checkout failed". (`-o`
    keeps make from building a venv in the copy: this one's tools are used.)"""
    import sys
    from pathlib import Path

    from conftest import make_project

    project = make_project(tmp_path / "repo")
    bin_dir = Path(sys.executable).parent

    def pull() -> str:
        done = subprocess.run(["make", "-o", ".venv/.installed-cpu", "pull", f"BIN={bin_dir}"], cwd=project,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
        return errors[0]

    assert "this commit has no dvc.lock" in pull()
    (project / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    assert "coronet-dvc-storage does not exist yet" in pull()
    empty = tmp_path / "empty-remote"
    empty.mkdir()
    subprocess.run([str(bin_dir / "dvc"), "remote", "add", "--local", "--force", "--default", "team", str(empty)],
                   cwd=project, check=True, capture_output=True)
    assert f"{empty} does not exist yet or is empty" in pull()


def test_make_push_to_a_remote_that_cannot_be_written_is_one_line(tmp_path):
    """`make push` to a read-only folder remote was DVC's traceback of permission errors. /proc takes no new
    folder, whoever asks (root included), as a read-only mount would not."""
    import sys
    from pathlib import Path

    from conftest import make_project

    project = make_project(tmp_path / "repo")
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "dvc"), "remote", "add", "--local", "--force", "--default", "team",
                    "/proc/coronet-dvc-storage"], cwd=project, check=True, capture_output=True)
    done = subprocess.run(["make", "-o", ".venv/.installed-cpu", "push", f"BIN={bin_dir}"], cwd=project,
                          capture_output=True, text=True, timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "cannot write to the DVC remote /proc/coronet-dvc-storage" in errors[0]


def test_what_dvc_plots_show_writes_is_not_committed_by_git_add():
    """`dvc plots show` writes dvc_plots/ (a 948 KB page) and the README's `git add -A` committed it."""
    paths = ["dvc_plots/index.html", "samples/covid.png", "mlflow.db.lock", "request.json", "results.csv",
             "cams/covid.png"]
    done = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == paths, done.stderr  # each path ignored (check-ignore prints those it ignores)
