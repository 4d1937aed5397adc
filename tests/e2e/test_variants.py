"""End to end: what params and a source module decide, and nothing else does. One pipeline run with the
classes in another order (another screening class, other groups) and a third source registered the way
ARCHITECTURE.md says: its module, its params and its synthetic twin; every output follows both."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import TINY, make_project, run_tool

pytestmark = pytest.mark.cost(110)  # seconds in make test (2 cores): the slowest files start first

REVERSED = ["pneumonia_viral", "pneumonia_bacterial", "normal", "covid"]
# A third source in its own layout (labels.csv beside its images), providing normal adult films.
TOY_SOURCE = '''"""A toy source for the test: a zip of labels.csv (file, label, patient) and images/."""

import csv
import io
import zipfile
from pathlib import Path

import numpy as np

from coronet.data import archives
from coronet.data.phantom import draw_xray, encode, write_zip
from coronet.data.sources.base import Candidate, Rejection


class ToySource:
    name = "toy"
    title = "A toy hospital (normal films of adults; for the test)"
    licence = "CC0"
    cohort_ages = "adults by provenance"
    caveats = ("a toy: its films are drawn",)
    maps_findings = False

    def candidates(self, archive, cfg):
        with archives.ArchiveReader() as reader:
            rows = list(csv.DictReader(io.StringIO(reader.read(archive, "labels.csv").decode())))
        chosen, rejected = [], []
        for row in rows:
            if row["label"] not in cfg.classes:
                rejected.append(Rejection(self.name, row["file"], row["file"], "label", "not one of our classes"))
                continue
            chosen.append(Candidate(row["label"], self.name, f"toy:{row['patient']}", "PA", "", "", self.licence,
                                    str(archive), f"images/{row['file']}"))
        return chosen, rejected

    def write_synthetic(self, path, cfg, classes):
        rng = np.random.default_rng([cfg.seed, 3])
        lines = ["file,label,patient"]
        entries = []
        for k in range(cfg.images_per_class):
            entries.append((f"images/{k}.png", encode(draw_xray(rng, "normal", cfg.image_size), "PNG")))
            lines.append(f"{k}.png,normal,{k}")
        lines.append("odd.png,tuberculosis,99")
        entries.append(("images/odd.png", encode(draw_xray(rng, "", cfg.image_size), "PNG")))
        write_zip(path, [("labels.csv", ("\\n".join(lines) + "\\n").encode()), *entries])


SOURCE = ToySource()
'''


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    root = tmp_path_factory.mktemp("variant")
    project = make_project(root / "repo", {
        **TINY, "train.epochs": 1, "classes": REVERSED, "screening_class": "normal",
        "class_groups": {"pneumonia": REVERSED[:2], "normal": ["normal"], "covid": ["covid"]},
        "merge.controls.classes": {"pneumonia_bacterial": ["Streptococcus"], "pneumonia_viral": ["SARS"],
                                   "normal": ["No Finding"]},
        "download.archives.toy": {"url": "https://example.invalid/toy.zip", "filename": "toy.zip", "sha256": ""}})
    (project / "src/coronet/data/sources/toy.py").write_text(TOY_SOURCE)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "PYTHONPATH": str(project / "src")}
    run_tool(project, "dvc", "repro", env=env)
    return project, env


def test_a_third_source_is_its_module_its_params_and_its_twin(variant):
    project, _ = variant
    sources = json.loads((project / "data/raw/sources.json").read_text())["archives"]
    assert list(sources) == ["covid", "kermany", "actualmed", "toy"] and sources["toy"]["url"].startswith(
        "synthetic://toy")
    manifest = pd.read_csv(project / "data/interim/manifest.csv", keep_default_na=False)
    toy = manifest[manifest["source"] == "toy"]
    assert len(toy) > 0 and set(toy["label"]) == {"normal"} and toy["patient_id"].str.startswith("toy:").all()
    rejected = pd.read_csv(project / "data/interim/rejected.csv", keep_default_na=False)
    assert rejected.loc[rejected["source"] == "toy", "code"].tolist() == ["label"]  # its own rule, its own reason
    data = json.loads((project / "metrics/data.json").read_text())
    assert set(data["sources"]) == {"covid", "kermany", "actualmed", "toy"} and "toy" in data["archives"]
    evidence = json.loads((project / "metrics/evidence.json").read_text())
    assert set(evidence["by_source"]) <= {"covid", "kermany", "toy"} and "toy" in set(
        pd.read_csv(project / "data/processed/images.csv")["source"])
    # every source trained on is in the probe (the external one is not: it is never trained on)
    assert evidence["confound_probe"]["images"] == data["total"] - data["images"]["external"]["total"]
    card = (project / "metrics/model_card.md").read_text()
    assert "toy (A toy hospital (normal films of adults; for the test))" in card  # its title, from its module


def test_every_output_follows_the_params_class_order(variant):
    project, env = variant
    assert json.loads((project / "models/run.json").read_text())["model"]["classes"] == REVERSED
    predictions = pd.read_csv(project / "metrics/predictions.csv")
    assert [c.removeprefix("p_") for c in predictions.columns if c.startswith("p_")] == REVERSED
    details = json.loads((project / "metrics/details.json").read_text())
    assert list(details["per_class"]) == REVERSED and list(details["confusion_matrix"]) == REVERSED
    assert all(list(row) == REVERSED for row in details["confusion_matrix"].values())
    headline = json.loads((project / "metrics/metrics.json").read_text())
    assert "normal_sensitivity" in headline and "covid_sensitivity" not in headline  # the screened class of params
    assert set(details["controls"]) == {"normal_rate", "other_source_normal_rate", "normal_rate_n",
                                        "other_source_normal_rate_n"}
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
    assert out.split(",")[1:6] == [*(f"p_{c}" for c in REVERSED), "predicted"]
    assert out.split(",")[6:10] == ["predicted_group", "pg_pneumonia", "pg_normal", "pg_covid"]
