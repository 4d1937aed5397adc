"""End to end: the DVC pipeline in a temporary git repository, offline (synthetic source, 71 px)."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import LOOPBACK, TINY, VENV_BIN, free_port, make_project, run_tool, set_params, start_server, stop_server
from coronet import synthetic


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """One `dvc repro` of all six stages; the tests below read what it produced."""
    root = tmp_path_factory.mktemp("pipeline")
    project = make_project(root / "repo", TINY)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    result = run_tool(project, "dvc", "repro", env=env)
    return project, env, result


def test_repro_writes_every_output(pipeline):
    project, _, result = pipeline
    for rel in ["data/raw/sources.json", "data/interim/manifest.csv", "data/interim/rejected.csv",
                "data/processed/images.csv", "data/processed/splits.csv", "metrics/data.json",
                "models/coronet.keras", "models/history.csv", "models/run.json", "models/package.json",
                "metrics/metrics.json", "metrics/evidence.json", "metrics/predictions.csv",
                "metrics/figures/confusion_matrix.png", "metrics/figures/roc.png", "metrics/figures/training_curves.png",
                "metrics/curves/calibration.csv", "metrics/curves/roc/covid.csv",
                "metrics/curves/precision_recall/pneumonia_viral.csv"]:
        assert (project / rel).is_file(), rel
    assert not (project / "models" / "checkpoints").exists()  # removed once training finished
    history = pd.read_csv(project / "models/history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert list(history.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert "accuracy" in result.stdout  # the metrics table


def test_data_outputs_are_consistent(pipeline):
    project, _, _ = pipeline
    manifest = pd.read_csv(project / "data/interim/manifest.csv")
    assert manifest.groupby("label").size().to_dict() == {c: 12 for c in
                                                          ["covid", "normal", "pneumonia_bacterial", "pneumonia_viral"]}
    rejected = pd.read_csv(project / "data/interim/rejected.csv")
    assert {"finding", "view", "modality", "missing_file", "undecodable", "duplicate"} <= set(rejected["code"])
    data = json.loads((project / "metrics/data.json").read_text())
    assert data["leakage"] == {"patients_shared": 0, "images_shared": 0, "near_duplicate_groups_shared": 0}
    sources = json.loads((project / "data/raw/sources.json").read_text())["archives"]
    assert {k: v["sha256"] for k, v in data["archives"].items()} == {k: v["sha256"] for k, v in sources.items()}
    assert sum(data["images"][s]["total"] for s in ("train", "val", "test")) == data["total"] == 48
    splits = pd.read_csv(project / "data/processed/splits.csv").merge(manifest, on="id")
    assert (splits.groupby("patient_id")["split"].nunique() == 1).all()


def numbers(tree) -> int:
    if isinstance(tree, dict):
        return sum(numbers(v) for v in tree.values())
    return int(isinstance(tree, int | float) and not isinstance(tree, bool))


def test_metrics_json_holds_the_headline_and_evidence_json_the_rest(pipeline):
    """metrics.json is what `dvc exp show` compares: at most about 45 numbers."""
    project, _, _ = pipeline
    headline = json.loads((project / "metrics/metrics.json").read_text())
    assert 30 <= numbers(headline) <= 45
    assert set(headline) == {"accuracy", "n_test", "macro_f1", "weighted_f1", "per_class", "confusion_matrix",
                             "grouped_accuracy", "covid_vs_rest", "ece"}
    metrics = json.loads((project / "metrics/evidence.json").read_text())
    assert numbers(metrics) > 2 * numbers(headline)
    for key in ("accuracy", "n_test", "confusion_matrix"):
        assert headline[key] == metrics[key]
    assert headline["macro_f1"] == metrics["macro_avg"]["f1"] and headline["ece"] == metrics["calibration"]["ece"]
    predictions = pd.read_csv(project / "metrics/predictions.csv")
    assert list(predictions.columns[:3]) == ["id", "label", "predicted"]
    assert np.allclose(predictions.filter(like="p_").sum(axis=1), 1, atol=1e-4)
    assert metrics["n_test"] == len(predictions)
    assert metrics["accuracy"] == pytest.approx((predictions["label"] == predictions["predicted"]).mean())
    for key in ["per_class", "macro_avg", "weighted_avg", "confusion_matrix", "grouped", "screening", "roc_auc"]:
        assert key in metrics
    assert set(metrics["per_class"]["covid"]) == {"precision", "recall", "f1", "specificity", "support"}
    ci = metrics["intervals"]
    for name in ("precision", "recall", "specificity"):
        interval = ci["per_class"]["normal"][name]
        assert interval is None or 0 <= interval["low"] <= interval["high"] <= 1
    assert ci["accuracy"]["low"] <= metrics["accuracy"] <= ci["accuracy"]["high"]
    assert set(ci["roc_auc"]) == set(metrics["roc_auc"]) and "macro_f1" in ci
    assert 0 <= metrics["calibration"]["ece"] <= 1 and 0 <= metrics["calibration"]["brier"] <= 2
    assert set(metrics["by_source"]) == {"covid", "kermany"}
    assert sum(g["n"] for g in metrics["by_age_band"].values()) == metrics["n_test"]
    assert "1-5 by provenance" in metrics["by_age_band"]
    probe = metrics["confound_probe"]
    assert probe["images"] == 48 and 0 <= probe["image_statistics"]["auc"] <= 1
    assert metrics["leakage"] == {"patients_shared": 0, "images_shared": 0, "near_duplicate_groups_shared": 0}


def test_model_card_renders_every_section(pipeline):
    project, _, _ = pipeline
    card = (project / "metrics/model_card.md").read_text()
    for heading in ["## Intended use", "## Data", "## Training setup", "## Results on the test split",
                    "## Calibration", "## Breakdowns", "## Confound probe", "## Leakage check",
                    "## Stress tests", "## What the model looked at", "## Known limitations"]:
        assert heading in card, heading
    assert "Not for diagnosis" in card and "89.5%" in card and "Download source of this run: synthetic" in card
    assert "input 71 px" in card and "grouped by patient" in card and "?" not in card.split("## Results")[0]
    for figure in ("figures/reliability.png", "figures/gradcam_panel.png", "figures/stress.png"):
        assert figure in card and (project / "metrics" / figure).is_file()


def test_stress_results_follow_params_and_the_predictions(pipeline):
    """Every configured transform and strength is in metrics/stress.json; its baseline is the evaluation's."""
    import yaml

    project, _, _ = pipeline
    results = json.loads((project / "metrics/stress.json").read_text())
    configured = yaml.safe_load((project / "params.yaml").read_text())["evaluate"]["stress"]["transforms"]
    assert {name: sorted(by) for name, by in results["transforms"].items()} == {
        name: sorted(f"{float(v):g}" for v in values) for name, values in configured.items()}
    predictions = pd.read_csv(project / "metrics/predictions.csv")
    assert results["images"] == len(predictions)
    assert results["baseline"]["accuracy"] == pytest.approx((predictions["label"] == predictions["predicted"]).mean())
    for by_strength in results["transforms"].values():
        for stats in by_strength.values():
            assert 0 <= stats["flip_rate"] <= 1 and set(stats["flip_to"]) == set(stats["recall"])


def test_mlflow_run_holds_params_curves_model_and_tags(pipeline):
    import mlflow

    project, env, _ = pipeline
    run_info = json.loads((project / "models/run.json").read_text())
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    run = client.get_run(run_info["run_id"])
    store = env["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")
    assert run.info.artifact_uri.startswith(f"file://{store.removesuffix('/mlflow.db')}/mlartifacts/")
    assert run.data.params["train.learning_rate"] == "0.001"
    assert run.data.params["split.group_by"] == "patient"  # the data stages' params, from dvc.lock
    for curve in ("accuracy/train", "accuracy/val", "loss/train", "loss/val", "epoch_seconds"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, curve)] == [1, 2], curve
    headline = json.loads((project / "metrics/metrics.json").read_text())
    assert run.data.metrics["test/accuracy"] == pytest.approx(headline["accuracy"])
    assert "test/per_class.covid.recall" in run.data.metrics and len(run.data.metrics) <= 60
    assert not any(k.startswith(("test/confusion_matrix", "test/intervals", "test/by_")) for k in run.data.metrics)
    assert run.data.tags["precision"] in {"float32", "mixed_bfloat16"}

    # One dataset per split, named by its role; the digest is DVC's hash of the processed images.
    lock = __import__("yaml").safe_load((project / "dvc.lock").read_text())["stages"]["resize"]["outs"]
    images_md5 = next(o["md5"] for o in lock if o["path"] == "data/processed/images")
    inputs = {next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset
              for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation", "testing"}
    assert all(d.digest == images_md5[:36] for d in inputs.values())
    sizes = {k: json.loads(d.profile)["num_rows"] for k, d in inputs.items()}
    assert sum(sizes.values()) == json.loads((project / "metrics/data.json").read_text())["total"]

    # The servable model: logged from code, with an input example; the test metrics are linked to it.
    package = json.loads((project / "models/package.json").read_text())
    model = mlflow.get_logged_model(package["model_uri"].removeprefix("models:/"))
    assert model.source_run_id == run.info.run_id
    assert {m.key for m in model.metrics} >= {"test/accuracy", "test/macro_f1"}
    files = {a.path for a in mlflow.artifacts.list_artifacts(package["model_uri"])}
    assert {"input_example.json", "serving_input_example.json", "pyfunc_entry.py"} <= files
    assert not [f for f in files if f.endswith(".pkl")]  # a model from code: nothing pickled
    tags = run.data.tags
    assert tags["device"] == "CPU" and len(tags["mlflow.source.git.commit"]) == 40
    assert not any(k.startswith(("dvc.data/", "data.")) for k in tags)  # on the datasets, not the run page
    dataset_tags = {t.key: t.value for t in run.inputs.dataset_inputs[0].tags}
    assert dataset_tags["covid.sha256"] == json.loads((project / "data/raw/sources.json").read_text())[
        "archives"]["covid"]["sha256"]
    assert any(k.startswith("system/") for k in run.data.metrics)  # MLflow system metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert {"figures/confusion_matrix.png", "figures/roc.png", "figures/training_curves.png",
            "figures/gradcam_panel.png", "figures/reliability.png", "figures/stress.png"} <= artifacts
    assert {"model_card.md", "stress.json", "evidence.json", "metrics.json", "curves"} <= {
        a.path for a in client.list_artifacts(run.info.run_id)}
    version = client.get_model_version_by_alias("coronet", "candidate")
    assert version.run_id == run.info.run_id

    model = mlflow.pyfunc.load_model("models:/coronet@candidate")
    test = pd.read_csv(project / "metrics/predictions.csv").head(3)
    manifest = pd.read_csv(project / "data/interim/manifest.csv").set_index("id")
    import zipfile

    originals = []
    for image_id in test["id"]:
        row = manifest.loc[image_id]
        with zipfile.ZipFile(project / row["archive"]) as z:
            originals.append(z.read(row["original_path"]))
    served = model.predict(pd.DataFrame({"image": [base64.b64encode(b).decode() for b in originals]}))
    assert list(served["predicted"]) == list(test["predicted"])
    np.testing.assert_allclose(served.filter(like="p_").to_numpy(), test.filter(like="p_").to_numpy(), atol=1e-4)


def test_experiment_changes_show_in_metrics_diff(pipeline):
    project, env, _ = pipeline
    from conftest import git

    git(project, "add", "-A")
    git(project, "commit", "-qm", "baseline results")
    run_tool(project, "dvc", "exp", "run", "-S", "train.learning_rate=0.01", env=env)
    params = json.loads(run_tool(project, "dvc", "params", "diff", "--json").stdout)
    change = params["params.yaml"]["train.learning_rate"]
    assert (change["old"], change["new"]) == (0.001, 0.01)
    diff = json.loads(run_tool(project, "dvc", "metrics", "diff", "--json").stdout)
    changed = diff.get("metrics/metrics.json", {})
    assert changed and any(v.get("diff") for v in changed.values())


def test_interrupted_training_resumes(tmp_path):
    project = make_project(tmp_path / "repo", {**TINY, "train.epochs": 3})
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    run_tool(project, "dvc", "repro", "split", env=env)
    state = project / "models/checkpoints/state.json"
    command = [str(VENV_BIN / "python"), "stages/train.py"]
    first = subprocess.Popen(command, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**__import__("os").environ, **env})
    deadline = time.monotonic() + 300
    while not (state.is_file() and json.loads(state.read_text())["epoch"] >= 1):
        assert first.poll() is None and time.monotonic() < deadline, "training ended before its first checkpoint"
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < 3 and not (project / "models/coronet.keras").exists()
    second = run_tool(project, "python", "stages/train.py", env=env)
    assert f"resuming from the checkpoint of epoch {done}" in second.stdout
    history = pd.read_csv(project / "models/history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    assert (project / "models/coronet.keras").is_file() and not state.exists()

    # The same three epochs without interruption give bit-identical weights on CPU: the resumed run
    # continued the shuffling, augmentation and dropout streams where the killed one stopped.
    resumed = (project / "models/coronet.keras").rename(tmp_path / "resumed.keras")
    third = run_tool(project, "python", "stages/train.py", env=env)
    assert "resuming" not in third.stdout
    import keras

    a = keras.models.load_model(resumed, safe_mode=True, compile=False)
    b = keras.models.load_model(project / "models/coronet.keras", safe_mode=True, compile=False)
    for x, y in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=x.path)


def test_real_layout_mirror_gives_a_correct_patient_disjoint_split(tmp_path, file_server):
    covid_zip, kermany_zip = tmp_path / "covid-chestxray-dataset.zip", tmp_path / "ChestXRay2017.zip"
    synthetic.write_archives(covid_zip, kermany_zip, seed=11, images_per_class=10, size=96)
    file_server.files["/mirror/covid-chestxray-dataset.zip"] = covid_zip.read_bytes()
    file_server.files["/mirror/ChestXRay2017.zip"] = kermany_zip.read_bytes()
    file_server.drop["/mirror/ChestXRay2017.zip"] = 50_000  # a dropped connection on the way
    import hashlib

    pins = {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in (("covid", covid_zip), ("kermany", kermany_zip))}
    project = make_project(tmp_path / "repo", {
        "download.source": "upstream", "download.mirror": f"{file_server.url}/mirror",
        "download.covid.sha256": pins["covid"], "download.kermany.sha256": pins["kermany"], "resize.size": 64})
    run_tool(project, "dvc", "repro", "split")
    sources = json.loads((project / "data/raw/sources.json").read_text())["archives"]
    assert sources["kermany"]["url"] == f"{file_server.url}/mirror/ChestXRay2017.zip"
    assert {k: v["sha256"] for k, v in sources.items()} == pins
    manifest = pd.read_csv(project / "data/interim/manifest.csv")
    assert manifest.groupby("label").size().to_dict() == {"covid": 10, "normal": 10, "pneumonia_bacterial": 10,
                                                          "pneumonia_viral": 10}
    assert set(manifest.loc[manifest["label"] == "covid", "source"]) == {"covid"}
    assert manifest["patient_id"].str.match(r"^(covid:\d+|kermany:(person\d+|(NORMAL2-)?IM-\d{4}))$").all()
    splits = pd.read_csv(project / "data/processed/splits.csv").merge(manifest, on="id")
    assert (splits.groupby("patient_id")["split"].nunique() == 1).all()

    # A tampered mirror, met by a fresh checkout (no download cache): the pinned checksum refuses it and no
    # archive is left as an output. (With the cache, the verified archive is reused without asking the mirror.)
    file_server.files["/mirror/ChestXRay2017.zip"] = kermany_zip.read_bytes()[:-10] + b"0123456789"
    import shutil

    shutil.rmtree(project / "data/raw/.downloads")
    set_params(project, {"download.synthetic.seed": 1})  # any params change makes download rerun
    failed = run_tool(project, "dvc", "repro", "download", check=False)
    assert failed.returncode != 0 and "sha256 mismatch" in failed.stderr + failed.stdout
    assert not (project / "data/raw/kermany/ChestXRay2017.zip").exists()


def test_mlflow_serving_answers_like_coronet_predict(pipeline, tmp_path, capsys, monkeypatch):
    """`mlflow models serve` on the registered model gives the probabilities `coronet predict` gives."""
    import os
    import urllib.request
    import zipfile

    from coronet.cli import main

    project, env, _ = pipeline
    manifest = pd.read_csv(project / "data/interim/manifest.csv")
    files = []
    for row in manifest.groupby("source").head(1).itertuples():  # one COVID-collection, one Kermany image
        with zipfile.ZipFile(project / row.archive) as z:
            path = tmp_path / f"{row.id}{os.path.splitext(row.original_path)[1]}"
            path.write_bytes(z.read(row.original_path))
            files.append(path)
    assert main(["predict", *map(str, files), "--model", str(project / "models/coronet.keras"), "--format", "json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])  # the registered model, same answers
    assert main(["predict", *map(str, files), "--model-uri", "models:/coronet@candidate", "--format", "json"]) == 0
    from_registry = json.loads(capsys.readouterr().out)
    assert [r["predicted"] for r in from_registry] == [r["predicted"] for r in expected]

    port = free_port()
    server = start_server(
        [str(VENV_BIN / "mlflow"), "models", "serve", "-m", "models:/coronet@candidate", "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port)], f"http://127.0.0.1:{port}/ping", tmp_path / "server.log", env,
        timeout=240)
    try:
        body = {"dataframe_split": {"columns": ["image"],
                                    "data": [[base64.b64encode(p.read_bytes()).decode()] for p in files]}}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with LOOPBACK.open(request, timeout=120) as response:
            served = json.loads(response.read())["predictions"]
    finally:
        stop_server(server)
    assert len(served) == len(expected) == 2
    for got, want in zip(served, expected, strict=True):
        assert got["predicted"] == want["predicted"] and got["error"] == ""
        for c in ["covid", "normal", "pneumonia_bacterial", "pneumonia_viral"]:
            assert got[f"p_{c}"] == pytest.approx(want[f"p_{c}"], abs=1e-5)


def test_package_survives_a_missing_run_and_a_locked_store(pipeline):
    """Packaging never fails the pipeline over MLflow; it says what it did, and a rerun on the same model
    registers no new version."""
    import sqlite3

    import mlflow

    project, env, _ = pipeline
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    before = len(client.search_model_versions("name = 'coronet'"))
    again = run_tool(project, "python", "stages/package.py", env=env)
    assert "registered coronet version" in again.stdout
    assert len(client.search_model_versions("name = 'coronet'")) == before  # the same model, the same version

    run_json = project / "models/run.json"
    original = run_json.read_text()
    try:
        run_json.write_text(original.replace(json.loads(original)["run_id"], "0" * 32))
        gone = run_tool(project, "python", "stages/package.py", env=env)
        assert "cannot be resumed" in gone.stdout and "logged to the new run" in gone.stdout

        lock = sqlite3.connect(env["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///"), timeout=1)
        lock.execute("BEGIN EXCLUSIVE")  # another process holds the store
        try:
            locked = run_tool(project, "python", "stages/package.py", env=env)
        finally:
            lock.rollback()
            lock.close()
        assert locked.stdout.count("warning:") == 1 and "goes on without MLflow" in locked.stdout
        assert json.loads((project / "models/package.json").read_text())["errors"]
    finally:
        run_json.write_text(original)


def test_console_shows_nothing_a_user_cannot_act_on(pipeline):
    """No TensorFlow start-up lines, MLflow INFO chatter, pickling or input-example warnings, progress bars
    of artifact downloads."""
    _, _, result = pipeline
    console = result.stdout + result.stderr
    for noise in ("absl::InitializeLog", "oneDNN custom operations", "cloudpickle", "input example",
                  "Downloading artifacts", "INFO mlflow", "UserWarning"):
        assert noise not in console, noise


def test_train_stays_up_to_date_when_evaluation_code_changes(pipeline, tmp_path):
    """Edits to metrics, Grad-CAM, plots and prediction code rerun evaluation, never the 80 training epochs."""
    import shutil

    project, _, _ = pipeline
    copy = tmp_path / "copy"
    shutil.copytree(project, copy, symlinks=True)
    for module in ("metrics", "gradcam", "plots", "predict"):
        path = copy / "src/coronet" / f"{module}.py"
        path.write_text(path.read_text() + "\n# an edit\n")
    status = json.loads(run_tool(copy, "dvc", "status", "--json").stdout)
    assert "train" not in status and "split" not in status
    assert "evaluate" in status and "package" in status  # the check can fail: these did notice the edit


def test_logged_requirements_cover_what_the_served_model_imports(pipeline, tmp_path):
    """Loads the registered model in a fresh process, classifies its input example, and maps every
    third-party module then loaded to its distribution: each is a logged requirement or installed by one."""
    project, env, _ = pipeline
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
    used = set(json.loads(run_tool(project, "python", str(script), env=env).stdout.strip().splitlines()[-1]))
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
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
    # Keras' model_visualization tries `import pydot` (then pydot_ng, pydotplus) and does without: optional.
    optional = {"pydot"}
    missing = {d for d in used if canonicalize_name(d) not in covered | optional}
    assert not missing, f"the served model imports {sorted(missing)}, which its requirements do not install"
    assert {"tqdm", "pillow", "pydicom", "keras"} <= logged


def test_predict_falls_back_to_the_registry_and_says_so(pipeline, tmp_path):
    """Where models/ is empty (after `make demo`, whose experiment ran in a temporary copy), `coronet
    predict` uses the registry's @candidate and names it; with no registry either, it says what to run."""
    import zipfile

    project, env, _ = pipeline
    manifest = pd.read_csv(project / "data/interim/manifest.csv").iloc[0]
    with zipfile.ZipFile(project / manifest["archive"]) as z:
        (tmp_path / "scan.png").write_bytes(z.read(manifest["original_path"]))
    used = run_tool(tmp_path, "coronet", "predict", "scan.png", env=env)
    assert "using models:/coronet@candidate" in used.stderr and "scan.png" in used.stdout
    empty = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'none.db'}"}
    missing = run_tool(tmp_path, "coronet", "predict", "scan.png", env=empty, check=False)
    assert missing.returncode == 2 and "dvc repro" in missing.stderr and "dvc pull" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and not (tmp_path / "none.db").exists()


def test_data_and_models_round_trip_through_a_dvc_remote(pipeline, tmp_path):
    """push to a folder remote; a fresh clone pulls, is up to date without rerunning a stage, and predicts."""
    from conftest import git

    project, env, _ = pipeline
    remote = tmp_path / "storage"
    run_tool(project, "dvc", "remote", "add", "--local", "--force", "--default", "storage", str(remote))
    run_tool(project, "dvc", "push")
    git(project, "add", "-A")
    git(project, "commit", "--allow-empty", "-qm", "results")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    run_tool(clone, "dvc", "remote", "add", "--local", "--force", "--default", "storage", str(remote))
    run_tool(clone, "dvc", "pull")
    status = run_tool(clone, "dvc", "status", "--json")
    assert json.loads(status.stdout) == {}
    dry = run_tool(clone, "dvc", "repro", "--dry")
    assert "Running stage" not in dry.stdout
    image = next((clone / "data/processed/images").glob("*.png"))
    predicted = run_tool(clone, "coronet", "predict", str(image), "--format", "json", env=env)
    assert json.loads(predicted.stdout)[0]["error"] == ""
