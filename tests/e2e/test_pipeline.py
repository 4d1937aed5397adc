"""End to end: the suite's one DVC pipeline run (synthetic sources, 71 px), inspected output by output;
the tests that change a project change a copy of it."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import (
    CLASSES,
    TINY,
    make_project,
    run_tool,
    set_params,
    write_twins,
)
from coronet.evaluation import tables

pytestmark = pytest.mark.cost(150)  # seconds in make test (2 cores): the slowest files start first

OUTPUTS = ["data/raw/sources.json", "data/raw/archives/covid-chestxray-dataset.zip", "data/interim/manifest.csv",
           "data/interim/rejected.csv", "data/processed/images.csv", "data/processed/splits.csv", "metrics/data.json",
           "models/coronet.keras", "models/history.csv", "models/run.json", "models/package.json",
           "metrics/metrics.json", "metrics/evidence.json", "metrics/predictions.csv", "metrics/controls.csv",
           "metrics/figures/confusion_matrix.png", "metrics/figures/roc.png", "metrics/figures/training_curves.png",
           "metrics/figures/gradcam_panel.png", "metrics/figures/stress.png", "metrics/curves/calibration.csv",
           "metrics/curves/roc/covid.csv", "metrics/curves/precision_recall/pneumonia_viral.csv"]

# What the shared run's twins hold (TINY): images_per_class films of each class to train on, controls_per_finding
# same-source controls for each of the COVID twin's 4 control findings, and the external twin's films (half a
# class per finding, 2 findings).
PER_CLASS = TINY["download.synthetic.images_per_class"]
TRAINED, CONTROLS, EXTERNAL = len(CLASSES) * PER_CLASS, 4 * TINY["download.synthetic.controls_per_finding"], PER_CLASS


def test_repro_writes_every_output(pipeline):
    project = pipeline.project
    for rel in OUTPUTS:
        assert (project / rel).is_file(), rel
    assert not (project / "models" / "checkpoints").exists()  # removed once training finished
    history = pd.read_csv(project / "models/history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert list(history.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    headline = json.loads((project / "metrics/metrics.json").read_text())
    # the evaluate stage's table on the console says what metrics.json says
    assert f"accuracy {headline['accuracy']:5.3f} on {headline['n_test']} test images" in pipeline.result.stdout


def test_data_outputs_are_consistent(pipeline):
    project = pipeline.project
    manifest = pd.read_csv(project / "data/interim/manifest.csv", keep_default_na=False)
    pool, controls = manifest[manifest["cohort"] == "pool"], manifest[manifest["cohort"] == "control"]
    assert pool.groupby("label").size().to_dict() == {c: PER_CLASS for c in CLASSES}
    # the COVID twin's same-source controls: 2 per finding, from its source only, mapped as params map them
    assert set(controls["source"]) == {"covid"} and controls["finding"].value_counts().to_dict() == {
        "No Finding": 2, "Pneumonia/Bacterial/Streptococcus": 2, "Pneumonia/Fungal/Pneumocystis": 2,
        "Pneumonia/Viral/SARS": 2}
    assert set(controls.loc[controls["finding"] == "Pneumonia/Fungal/Pneumocystis", "label"]) == {""}
    rejected = pd.read_csv(project / "data/interim/rejected.csv", keep_default_na=False)
    assert {"finding", "view", "modality", "missing_file", "undecodable", "duplicate"} <= set(rejected["code"])
    assert "todo" in rejected.loc[rejected["code"] == "finding", "reason"].iloc[0]
    data = json.loads((project / "metrics/data.json").read_text())
    assert data["schema"] == "coronet.data/1"
    assert data["leakage"] == {"patients_shared": 0, "images_shared": 0, "near_duplicate_groups_shared": 0}
    sources = json.loads((project / "data/raw/sources.json").read_text())["archives"]
    assert {k: v["sha256"] for k, v in data["archives"].items()} == {k: v["sha256"] for k, v in sources.items()}
    assert sum(data["images"][s]["total"] for s in ("train", "val", "test", "control", "external")) == data[
        "total"] == TRAINED + CONTROLS + EXTERNAL
    assert data["controls"]["scored_only"] == data["images"]["control"]["total"] == CONTROLS
    # the external twin's films, half a class per finding (COVID-19, No finding), scored only
    assert {k: data["images"]["external"][k] for k in ("covid", "normal", "total")} == {
        "covid": EXTERNAL // 2, "normal": EXTERNAL // 2, "total": EXTERNAL}
    splits = pd.read_csv(project / "data/processed/splits.csv").merge(manifest, on="id")
    assert (splits.groupby("patient_id")["split"].nunique() == 1).all()
    assert set(splits.loc[splits["cohort"] == "control", "split"]) == {"control"}  # never trained on
    assert set(splits.loc[splits["source"] == "actualmed", "split"]) == {"external"}  # never trained on
    assert {"inconclusive", "missing_file"} <= set(rejected.loc[rejected["source"] == "actualmed", "code"])


def test_metrics_json_holds_the_headline_and_details_json_the_rest(pipeline):
    """metrics.json is what `dvc metrics show` prints first: six numbers, the screened class's sensitivity among
    the first columns (DVC sorts them), at most 120 columns; details.json holds per class, the confusion matrix
    and the shortcut checks' rates, each with its n."""
    from coronet.params import ClassScheme, load_params
    from coronet.records import DetailsRecord, EvidenceRecord, HeadlineRecord

    project = pipeline.project
    scheme = ClassScheme.parse(load_params(project / "params.yaml"))
    head = HeadlineRecord.read(project / "metrics/metrics.json")
    details = DetailsRecord.read(project / "metrics/details.json")
    assert head.screening == scheme.screening and sorted(head.to_json())[1] == f"{scheme.screening}_sensitivity"
    shown = run_tool(project, "dvc", "metrics", "show", "metrics/metrics.json", env={"COLUMNS": "120"}).stdout
    assert max(map(len, shown.splitlines())) <= 120 and str(head.n_test) in shown
    # the external figures, worked out again from metrics/external.csv
    external = tables.EXTERNAL.read(CLASSES, project)
    covid = external["label"] == scheme.screening
    s = scheme.screening
    assert details.external == {
        f"{s}_sensitivity": pytest.approx((external.loc[covid, "predicted"] == s).mean()),
        f"{s}_sensitivity_n": int(covid.sum()),
        f"{s}_specificity": pytest.approx((external.loc[~covid, "predicted"] != s).mean()),
        f"{s}_specificity_n": int((~covid).sum())}
    evidence = EvidenceRecord.read(project / "metrics/evidence.json")
    assert (head.accuracy, head.n_test, head.macro_f1) == (evidence.accuracy, evidence.n_test,
                                                          evidence.macro_avg["f1"])
    assert head.ece == evidence.calibration["ece"] and details.confusion_matrix == evidence.confusion_matrix
    assert list(details.per_class) == scheme.classes
    assert head.sensitivity == evidence.per_class[s]["recall"]
    metrics = json.loads((project / "metrics/evidence.json").read_text())
    predictions = tables.PREDICTIONS.read(CLASSES, project)
    assert list(predictions.columns[:3]) == ["id", "label", "predicted"]
    assert np.allclose(predictions.filter(like="p_").sum(axis=1), 1, atol=1e-4)  # 6-decimal rounding of 4 values
    assert metrics["n_test"] == len(predictions)
    assert metrics["accuracy"] == pytest.approx((predictions["label"] == predictions["predicted"]).mean())
    assert set(metrics["per_class"]["covid"]) == {"precision", "recall", "f1", "specificity", "support"}
    ci = metrics["intervals"]
    for name in ("precision", "recall", "specificity"):  # a Wilson interval holds its point estimate
        score, interval = metrics["per_class"]["normal"][name], ci["per_class"]["normal"][name]
        assert (score is None) == (interval is None) and (score is None or interval["low"] <= score <= interval["high"])
    assert ci["accuracy"]["low"] <= metrics["accuracy"] <= ci["accuracy"]["high"]
    # Brier and ECE worked out here from predictions.csv; its 6 decimals move each probability by 5e-7 at most
    probs = predictions[[f"p_{c}" for c in CLASSES]].to_numpy()
    onehot = (predictions["label"].to_numpy()[:, None] == np.array(CLASSES)).astype(float)
    assert metrics["calibration"]["brier"] == pytest.approx(((probs - onehot) ** 2).sum(axis=1).mean(), abs=1e-5)
    # ECE (binned) is at least the gap between accuracy and mean confidence (the one-bin ECE): triangle inequality
    gap = abs(metrics["accuracy"] - probs.max(axis=1).mean())
    assert gap - 1e-5 <= metrics["calibration"]["ece"] <= 1
    assert set(metrics["by_source"]) == {"covid", "kermany"}
    assert sum(g["n"] for g in metrics["by_age_band"].values()) == metrics["n_test"]
    assert "1-5 by provenance" in metrics["by_age_band"]
    probe = metrics["confound_probe"]
    assert probe["images"] == TRAINED + CONTROLS and probe["image_statistics"]["folds"] == 5  # the trained sources' films only
    assert metrics["leakage"] == {"patients_shared": 0, "images_shared": 0, "near_duplicate_groups_shared": 0}


def test_the_same_source_controls_are_scored_from_their_predictions(pipeline):
    """Is it COVID-19 or the source? Every number worked out again from metrics/controls.csv and
    metrics/predictions.csv, and the headline holds the two rates."""
    project = pipeline.project
    scored = tables.CONTROLS.read(CLASSES, project)
    assert len(scored) == CONTROLS and set(scored["source"]) == {"covid"}
    controls = json.loads((project / "metrics/evidence.json").read_text())["controls"]
    called = scored["predicted"] == "covid"
    assert controls["called_screening"]["n"] == CONTROLS and controls["called_screening"]["called"] == called.sum()
    for finding, part in scored.groupby("finding"):
        assert controls["by_finding"][finding]["rate"] == pytest.approx((part["predicted"] == "covid").mean())
    test = tables.PREDICTIONS.read(CLASSES, project).merge(
        pd.read_csv(project / "data/processed/images.csv")[["id", "source"]], on="id")
    others = test[(test["source"] == "kermany") & (test["label"] != "covid")]
    assert controls["other_source_called_screening"]["n"] == len(others)
    assert controls["other_source_called_screening"]["rate"] == pytest.approx((others["predicted"] == "covid").mean())
    mapped = scored[scored["label"] != ""]
    assert controls["mapped"]["n"] == 6 and controls["mapped"]["rate"] == pytest.approx(
        (mapped["predicted"] == mapped["label"]).mean())
    interval = controls["called_screening"]["interval"]
    assert interval["low"] <= controls["called_screening"]["rate"] <= interval["high"]
    details = json.loads((project / "metrics/details.json").read_text())
    assert details["controls"] == {"covid_rate": controls["called_screening"]["rate"],
                                   "covid_rate_n": controls["called_screening"]["n"],
                                   "other_source_covid_rate": controls["other_source_called_screening"]["rate"],
                                   "other_source_covid_rate_n": controls["other_source_called_screening"]["n"]}


def test_model_card_renders_every_section(pipeline):
    card = (pipeline.project / "metrics/model_card.md").read_text()
    for heading in ["## Intended use", "## Data", "## Training setup", "## Results on the test split",
                    "## Calibration", "## Breakdowns", "## Confound probe", "## Leakage check",
                    "## Is it COVID-19 or the source?", "## Stress tests", "### The lungs-removed test",
                    "## What the model looked at", "## Known limitations"]:
        assert heading in card, heading
    assert "Not for diagnosis" in card and "89.5%" in card
    # a synthetic model says so in the card's first lines, and not the real cohorts' ages or licences
    first = card.splitlines()[2]
    assert first.startswith("> **Trained on ") and "SYNTHETIC images" in first and "mean nothing" in first
    assert "**Synthetic images only**" in card and "Licences of the images used" not in card
    assert "(100.0-100.0)" not in card and "(1.000-1.000)" not in card  # no interval of zero width
    assert "input 71 px" in card and "grouped by patient" in card and "?" not in card.split("## Results")[0]
    assert "same-source controls" in card and "| Pneumonia/Viral/SARS | 2 |" in card
    assert "Kermany et al. ChestXRay2017" in card and "Cohen et al." in card  # the sources' own titles
    for figure in ("figures/reliability.png", "figures/gradcam_panel.png", "figures/stress.png"):
        assert figure in card and (pipeline.project / "metrics" / figure).is_file()


def test_stress_results_follow_params_and_the_predictions(pipeline):
    """Every configured transform and strength is in metrics/stress.json; its baseline is the evaluation's;
    the lung tests are set against chance."""
    project = pipeline.project
    results = json.loads((project / "metrics/stress.json").read_text())
    configured = yaml.safe_load((project / "params.yaml").read_text())["evaluate"]["stress"]["transforms"]
    assert {name: sorted(by) for name, by in results["transforms"].items()} == {
        name: sorted(f"{float(v):g}" for v in values) for name, values in configured.items()}
    predictions = tables.PREDICTIONS.read(CLASSES, project)
    assert results["images"] == len(predictions)
    assert results["baseline"]["accuracy"] == pytest.approx((predictions["label"] == predictions["predicted"]).mean())
    assert results["chance"] == pytest.approx(predictions["label"].value_counts(normalize=True).max())
    before = predictions["predicted"].value_counts()
    for by_strength in results["transforms"].values():
        for stats in by_strength.values():  # every changed answer left exactly one class
            left = sum((stats["flip_from"][c] or 0) * before.get(c, 0) for c in CLASSES)
            assert stats["flip_rate"] * len(predictions) == pytest.approx(left) and set(stats["flip_to"]) == set(CLASSES)
    lungs = results["lungs"]["lungs_removed 0.7"]
    assert lungs["accuracy"] == results["transforms"]["lungs_removed"]["0.7"]["accuracy"]
    assert lungs["above_chance"] == (lungs["interval"]["low"] > results["chance"])


def test_mlflow_run_holds_params_curves_model_and_tags(pipeline):
    import mlflow

    project = pipeline.project
    run_info = json.loads((project / "models/run.json").read_text())
    mlflow.set_tracking_uri(pipeline.store)
    client = mlflow.MlflowClient()
    run = client.get_run(run_info["run_id"])
    store = pipeline.store.removeprefix("sqlite:///")
    assert run.info.artifact_uri.startswith(f"file://{store.removesuffix('/mlflow.db')}/mlartifacts/")
    assert run.info.run_name.startswith("repro-")  # a plain dvc repro's run is named, not "clever-cat-123"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # opens on the runs
    assert run.data.params["train.learning_rate"] == "0.001"
    assert run.data.params["split.group_by"] == "patient"  # the data version's settings, from metrics/data.json
    for curve in ("accuracy/train", "accuracy/val", "loss/train", "loss/val", "epoch_seconds"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, curve)] == [1, 2], curve
    headline = json.loads((project / "metrics/metrics.json").read_text())
    details = json.loads((project / "metrics/details.json").read_text())
    assert run.data.metrics["test/accuracy"] == pytest.approx(headline["accuracy"])
    assert run.data.metrics["test/covid_sensitivity"] == pytest.approx(headline["covid_sensitivity"])
    assert run.data.metrics["test/controls.covid_rate"] == pytest.approx(details["controls"]["covid_rate"])
    assert "test/per_class.covid.recall" in run.data.metrics
    assert not any(k.endswith(("_n", ".support")) for k in run.data.metrics)  # counts stay in the JSON
    assert not any(k.startswith(("test/confusion_matrix", "test/intervals", "test/by_")) for k in run.data.metrics)
    assert run.data.tags["precision"] in {"float32", "mixed_bfloat16"}

    # One dataset per split, named by its role; the digest is the image index's sha256 (it lists each PNG's).
    images_sha256 = hashlib.sha256((project / "data/processed/images.csv").read_bytes()).hexdigest()
    inputs = {next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset
              for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation", "testing"}
    assert all(d.digest == images_sha256[:36] for d in inputs.values())
    sizes = {k: json.loads(d.profile)["num_rows"] for k, d in inputs.items()}
    data = json.loads((project / "metrics/data.json").read_text())
    assert sum(sizes.values()) == data["total"] - data["images"]["control"]["total"] - data["images"]["external"][
        "total"]

    # The servable model: logged from code, with an input example; the test metrics are linked to it.
    package = json.loads((project / "models/package.json").read_text())
    model = mlflow.get_logged_model(package["model_uri"].removeprefix("models:/"))
    assert model.source_run_id == run.info.run_id
    assert {m.key for m in model.metrics} >= {"test/accuracy", "test/macro_f1"}
    files = {a.path for a in mlflow.artifacts.list_artifacts(package["model_uri"])}
    assert {"input_example.json", "serving_input_example.json", "entry.py"} <= files
    assert not [f for f in files if f.endswith(".pkl")]  # a model from code: nothing pickled
    tags = run.data.tags
    assert tags["device"] == "CPU" and len(tags["mlflow.source.git.commit"]) == 40
    assert not any(k.startswith(("dvc.data/", "data.")) for k in tags)  # on the datasets, not the run page
    dataset_tags = {t.key: t.value for t in run.inputs.dataset_inputs[0].tags}
    assert dataset_tags["splits.sha256"] == hashlib.sha256((project / "data/processed/splits.csv").read_bytes()
                                                          ).hexdigest()
    assert dataset_tags["covid.sha256"] == json.loads((project / "data/raw/sources.json").read_text())[
        "archives"]["covid"]["sha256"]
    # A synthetic model says so: the run's description and tags, the registered version's, the
    # served model's metadata; serving params carry their section's prefix (no bare batch_size beside train's).
    assert "SYNTHETIC images" in tags["mlflow.note.content"] and tags["training.data"] == "synthetic"
    assert (tags["training.image_size"], tags["training.weights"], tags["training.epochs"]) == ("71", "none", "2")
    version = client.get_model_version(package["registered_model"], package["version"])
    assert version.description == tags["mlflow.note.content"] and version.tags["training.data"] == "synthetic"
    metadata = mlflow.models.get_model_info(package["model_uri"]).metadata
    assert metadata["training.data"] == "synthetic" and "SYNTHETIC" in metadata["trained_on"]
    assert not {"batch_size", "max_rows", "low_confidence"} & set(run.data.params)
    # System metrics sit in a finished child run: in the run itself the page would list them first.
    assert not any(k.startswith("system/") for k in run.data.metrics)
    (system,) = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert system.info.run_name == f"{run.info.run_name}/system" and system.info.status == "FINISHED"
    assert any(k.startswith("system/cpu") for k in system.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert {"figures/confusion_matrix.png", "figures/roc.png", "figures/training_curves.png",
            "figures/gradcam_panel.png", "figures/reliability.png", "figures/stress.png"} <= artifacts
    assert {"model_card.md", "stress.json", "evidence.json", "metrics.json", "controls.csv", "curves"} <= {
        a.path for a in client.list_artifacts(run.info.run_id)}
    version = client.get_model_version_by_alias("coronet", "candidate")
    assert version.run_id == run.info.run_id

    served = mlflow.pyfunc.load_model("models:/coronet@candidate")
    test = tables.PREDICTIONS.read(CLASSES, project).head(3)
    manifest = pd.read_csv(project / "data/interim/manifest.csv").set_index("id")
    originals = []
    for image_id in test["id"]:
        row = manifest.loc[image_id]
        with zipfile.ZipFile(project / row["archive"]) as z:
            originals.append(z.read(row["original_path"]))
    answer = served.predict(pd.DataFrame({"image": [base64.b64encode(b).decode() for b in originals]}))
    assert list(answer["predicted"]) == list(test["predicted"])
    # another batch composition (float32 rounding, 1e-6) and predictions.csv's 6 decimals
    np.testing.assert_allclose(answer.filter(like="p_").to_numpy(dtype=float), test.filter(like="p_").to_numpy(),
                               atol=1e-4)
    mlflow.set_tracking_uri(None)


def test_real_layout_mirror_gives_a_correct_patient_disjoint_split(tmp_path, file_server):
    mirror = tmp_path / "upstream"
    mirror.mkdir()
    write_twins(mirror, seed=11, images_per_class=10, size=96)
    covid_zip, kermany_zip = mirror / "covid-chestxray-dataset.zip", mirror / "ChestXRay2017.zip"
    for archive in mirror.iterdir():
        file_server.files[f"/mirror/{archive.name}"] = archive.read_bytes()
    file_server.drop["/mirror/ChestXRay2017.zip"] = 50_000  # a dropped connection on the way
    import hashlib

    pins = {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in (("covid", covid_zip), ("kermany", kermany_zip))}
    project = make_project(tmp_path / "repo", {
        "download.source": "upstream", "download.mirror": f"{file_server.url}/mirror",
        "download.archives.covid.sha256": pins["covid"], "download.archives.kermany.sha256": pins["kermany"],
        "resize.size": 64})
    run_tool(project, "dvc", "repro", "split")
    sources = json.loads((project / "data/raw/sources.json").read_text())["archives"]
    assert sources["kermany"]["url"] == f"{file_server.url}/mirror/ChestXRay2017.zip"
    assert {k: v["sha256"] for k, v in sources.items() if k in pins} == pins
    manifest = pd.read_csv(project / "data/interim/manifest.csv", keep_default_na=False)
    pool = manifest[manifest["cohort"] == "pool"]
    assert pool.groupby("label").size().to_dict() == {c: 10 for c in CLASSES}
    assert set(pool.loc[pool["label"] == "covid", "source"]) == {"covid"}
    assert manifest["patient_id"].str.match(r"^(covid:\d+|kermany:(person\d+|(NORMAL2-)?IM-\d{4})|actualmed:ANON\d+)$").all()
    splits = pd.read_csv(project / "data/processed/splits.csv").merge(manifest, on="id")
    assert (splits.groupby("patient_id")["split"].nunique() == 1).all()

    # A tampered mirror, met by a fresh checkout (no download cache): the pinned checksum refuses it and no
    # archive is left as an output. (With the cache, the verified archive is reused without asking the mirror.)
    file_server.files["/mirror/ChestXRay2017.zip"] = kermany_zip.read_bytes()[:-10] + b"0123456789"
    shutil.rmtree(project / "data/raw/.downloads")
    set_params(project, {"download.synthetic.seed": 1})  # any params change makes download rerun
    failed = run_tool(project, "dvc", "repro", "download", check=False)
    assert failed.returncode != 0 and "sha256 mismatch" in failed.stderr + failed.stdout
    assert not (project / "data/raw/archives/ChestXRay2017.zip").exists()


def test_console_shows_nothing_a_user_cannot_act_on(pipeline):
    """No TensorFlow start-up or C++ lines, MLflow INFO chatter, pickling or input-example warnings, progress
    bars of artifact downloads, DVC's notes about outputs it has no hash for yet."""
    console = pipeline.result.stdout + pipeline.result.stderr
    for noise in ("absl::InitializeLog", "oneDNN custom operations", "NodeDef mentions attribute", "cloudpickle",
                  "input example", "Downloading artifacts", "INFO mlflow", "UserWarning", "\r", "\x1b[",
                  "Traceback"):
        assert noise not in console, repr(noise)


def test_train_stays_up_to_date_when_evaluation_code_changes(pipeline, tmp_path):
    """Edits to metrics, Grad-CAM, plots, the controls, serving and the input checks rerun evaluation (or
    packaging), never the 80 training epochs."""
    copy = tmp_path / "copy"
    shutil.copytree(pipeline.project, copy, symlinks=True)
    for module in ("evaluation/metrics", "evaluation/gradcam", "evaluation/plots", "evaluation/controls",
                   "serving/predict", "imaging/checks"):
        path = copy / "src/coronet" / f"{module}.py"
        path.write_text(path.read_text() + "\n# an edit\n")
    status = json.loads(run_tool(copy, "dvc", "status", "--json").stdout)
    assert "train" not in status and "split" not in status
    assert "evaluate" in status and "package" in status  # the check can fail: these did notice the edit


def test_evaluate_refuses_a_corrupt_record_before_it_rewrites_anything(pipeline_copy):
    """Evaluate rewrote most of its outputs before it found a corrupt metrics/data.json."""
    project = pipeline_copy.project
    (project / "metrics/data.json").write_text("{ not json")
    before = {p: p.read_bytes() for p in (project / "metrics").rglob("*") if p.is_file() and p.name != "data.json"}
    done = run_tool(project, "python", "stages/evaluate.py", env=pipeline_copy.env, check=False)
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1].startswith("error: metrics/data.json")
    assert "Traceback" not in done.stderr
    assert {p: p.read_bytes() for p in before} == before


def test_everything_the_model_draws_says_what_it_was_trained_on(pipeline, tmp_path):
    """Grad-CAM overlays (CLI and page) and metrics/figures/*.png did not say the demo's model was synthetic."""
    from PIL import Image

    project = pipeline.project
    statement = json.loads((project / "models/run.json").read_text())["trained_on"]
    assert statement["download_source"] == "synthetic"
    figures = sorted((project / "metrics/figures").glob("*.png"))
    assert len(figures) >= 6
    for figure in figures:
        with Image.open(figure) as image:
            assert image.text.get("training_data") == "synthetic", figure.name
            assert "SYNTHETIC" in image.text["trained_on"]
            band = np.asarray(image.convert("RGB"))[-3]  # the band under the figure: red for a synthetic model
            assert band[:, 0].mean() > 120 and band[:, 1].mean() < 60, figure.name
    image = next((project / "data/processed/images").glob("*.png"))
    run_tool(project, "coronet", "predict", str(image), "--gradcam", str(tmp_path / "cams"), env=pipeline.env)
    (overlay,) = (tmp_path / "cams").glob("*.png")
    with Image.open(overlay) as picture:
        assert picture.text["training_data"] == "synthetic"
