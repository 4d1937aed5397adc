"""End to end: the shared run's model served: through MLflow, rebuilt when what it serves changes, its
logged requirements, and `coronet predict` falling back to the registry."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import (
    CLASSES,
    REFERENCE,
    VENV_BIN,
    free_port,
    in_process,
    run_tool,
    set_params,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.cost(300)  # seconds in make test (2 cores): the slowest files start first


def scans(pipeline, folder: Path) -> list[Path]:
    """One original file of each source (the COVID collection's and Kermany's), as a user would have them."""
    project = pipeline.project
    manifest = pd.read_csv(project / "data/interim/manifest.csv")
    files = []
    for row in manifest[manifest["cohort"] == "pool"].groupby("source").head(1).itertuples():
        with zipfile.ZipFile(project / row.archive) as z:
            path = folder / f"{row.id}{Path(row.original_path).suffix}"
            path.write_bytes(z.read(row.original_path))
            files.append(path)
    return files


def readme_request() -> str:
    """The README's request to the served model, as a user copies it (from "Serving through MLflow")."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("## Serving through MLflow", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return "\n".join(line for line in block.splitlines() if line.startswith(("scan=", "request=", "printf", "curl",
                                                                               "  ")))


def test_mlflow_serving_answers_like_coronet_predict(pipeline, tmp_path, capsys, monkeypatch):
    """`mlflow models serve` on the registered model gives the probabilities `coronet predict` gives, to the
    README's own request, on a real X-ray of 300 KB where ../shared has one (a command line of base64 that
    size is too long for curl's arguments; the README's request writes a file)."""
    import subprocess

    from coronet.cli import main

    files = scans(pipeline, tmp_path)
    real = REFERENCE / "quirky-images" / "10.1016-slash-j.healun.2020.04.004.jpg"
    if real.is_file():
        files.append(tmp_path / "real.jpg")
        files[-1].write_bytes(real.read_bytes())
    model = str(pipeline.project / "models/coronet.keras")
    assert main(["predict", *map(str, files), "--model", model, "--format", "json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", pipeline.store)  # the registered model, same answers
    assert main(["predict", *map(str, files), "--model-uri", "models:/coronet@candidate", "--format", "json"]) == 0
    assert [r["predicted"] for r in json.loads(capsys.readouterr().out)] == [r["predicted"] for r in expected]

    port = free_port()
    server = start_server(
        [str(VENV_BIN / "mlflow"), "models", "serve", "-m", "models:/coronet@candidate", "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port)], f"http://127.0.0.1:{port}/ping", tmp_path / "server.log",
        pipeline.env, timeout=240)
    try:
        answers = []
        for path in [*files, tmp_path / "not-an-image.png"]:
            if not path.exists():
                path.write_text("not an image")
            script = readme_request().replace("samples/covid.png", str(path)).replace("5001", str(port))
            done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                                  env={**__import__("os").environ, "no_proxy": "127.0.0.1"})
            assert done.returncode == 0, done.stderr
            assert not list(tmp_path.glob("*.json"))  # the request (an X-ray in base64) went outside the folder
            answers.append(json.loads(done.stdout)["predictions"][0])  # strict JSON: NaN would not parse
    finally:
        stop_server(server)
    for got, want in zip(answers, expected, strict=False):
        assert got["predicted"] == want["predicted"] and got["error"] == "" and got["checks"] == want["checks"]
        for c in CLASSES:
            assert got[f"p_{c}"] == pytest.approx(want[f"p_{c}"], abs=1e-5)  # batches differ: float32, 6 decimals
    assert answers[-1]["error"].startswith("not a recognised image format")
    assert answers[-1]["p_covid"] is None  # null in JSON


def test_the_served_model_is_rebuilt_when_what_it_serves_changes(pipeline_copy, monkeypatch, capsys):
    """With serving.max_rows 2 the old logged model (max_rows 256) was registered again,
    because reuse was keyed on the Keras file alone; a serving code change was missed the same way."""
    import mlflow

    project, env = pipeline_copy.project, pipeline_copy.env
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    first = client.get_model_version_by_alias("coronet", "candidate")
    set_params(project, {"serving.max_rows": 2})
    run_tool(project, "dvc", "repro", env=env)
    second = client.get_model_version_by_alias("coronet", "candidate")
    assert int(second.version) == int(first.version) + 1
    mlmodel = Path(mlflow.artifacts.download_artifacts(f"models:/coronet/{second.version}/MLmodel"))
    config = yaml.safe_load(mlmodel.read_text())["flavors"]["python_function"]["config"]
    assert config["serving.max_rows"] == 2
    served = project / "src/coronet/serving/pyfunc.py"
    served.write_text(served.read_text() + "\n# a change to the served code\n")
    run_tool(project, "dvc", "repro", env=env)
    assert int(client.get_model_version_by_alias("coronet", "candidate").version) == int(second.version) + 1
    set_params(project, {"tracking.registered_model": ""})  # a config error, not an outage
    code, _, err = in_process(project, "package", monkeypatch, capsys)
    assert code == 1 and err.strip() == "error: params.yaml: tracking.registered_model must be a non-empty name, got ''"
    mlflow.set_tracking_uri(None)


def test_logged_requirements_cover_what_the_served_model_imports(pipeline, tmp_path):
    """Loads the registered model in a fresh process, classifies its input example, and maps every
    third-party module then loaded to its distribution: each is a logged requirement or installed by one."""
    script = tmp_path / "imports.py"
    script.write_text("""
import json, sys
import mlflow
from importlib import metadata
before = set(sys.modules)
model = mlflow.pyfunc.load_model("models:/coronet@candidate")
example = model.input_example
assert example is not None
out = model.predict(example)
assert out["error"].iloc[0] == "", out
new = {m.split(".")[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names) - {"coronet"}
providers = metadata.packages_distributions()
print(json.dumps(sorted({d for m in new for d in providers.get(m, [])})))
""")
    used = set(json.loads(run_tool(pipeline.project, "python", str(script), env=pipeline.env).stdout.strip()
                          .splitlines()[-1]))
    import mlflow

    mlflow.set_tracking_uri(pipeline.store)
    path = mlflow.artifacts.download_artifacts("models:/coronet@candidate/requirements.txt", dst_path=str(tmp_path))
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    logged = {canonicalize_name(Requirement(line).name) for line in Path(path).read_text().splitlines() if "==" in line}
    covered, todo = set(), list(logged)  # the logged requirements and everything they install
    while todo:
        name = todo.pop()
        if name in covered:
            continue
        covered.add(name)
        try:
            requires = [Requirement(r) for r in metadata.requires(name) or []]
        except metadata.PackageNotFoundError:
            continue
        todo += [canonicalize_name(r.name) for r in requires if r.marker is None or r.marker.evaluate({"extra": ""})]
    # Keras tries `import pydot` (model_visualization) and `import huggingface_hub` (saving_lib) and does
    # without either: optional, not requirements.
    missing = {d for d in used if canonicalize_name(d) not in covered | {"pydot", "huggingface-hub"}}
    assert not missing, f"the served model imports {sorted(missing)}, which its requirements do not install"
    assert {"tqdm", "pillow", "pydicom", "keras"} <= logged
    mlflow.set_tracking_uri(None)


def test_predict_falls_back_to_the_registry_and_says_so(pipeline, tmp_path):
    """Where models/ is empty (a fresh clone after `make demo` in another checkout), `coronet predict` uses the
    registry's @candidate and names it; with no registry either, it says what to run."""
    (scan,) = scans(pipeline, tmp_path)[:1]
    used = run_tool(tmp_path, "coronet", "predict", scan.name, env=pipeline.env)
    assert "using models:/coronet@candidate" in used.stderr and scan.name in used.stdout
    empty = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'none.db'}"}
    missing = run_tool(tmp_path, "coronet", "predict", scan.name, env=empty, check=False)
    assert missing.returncode == 2 and "dvc repro" in missing.stderr and "dvc pull" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and not (tmp_path / "none.db").exists()
