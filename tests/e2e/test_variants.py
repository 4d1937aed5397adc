"""End to end: what params, a source module and a drawn finding decide, and nothing else does. One pipeline run
with the classes in another order (another screening class, other groups), a fourth training source and a fifth
class, each added the way ARCHITECTURE.md says and touching the files it counts: the source is its module and
params.yaml; the class is params.yaml, the module of the source that labels it (the same toy) and one entry in
the phantom's FINDINGS, so the twins draw it. Every output follows."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import ROOT, TINY, make_project, run_tool
from coronet.evaluation import tables

pytestmark = pytest.mark.cost(110)  # seconds in make test (2 cores): the slowest files start first

REVERSED = ["pneumonia_viral", "pneumonia_bacterial", "normal", "covid"]
CLASSES = [*REVERSED, "tuberculosis"]  # the paper's four in another order, and a fifth
# A source in its own layout (labels.csv beside its images), providing normal adult films and the fifth class.
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
    title = "A toy hospital (normal and tuberculosis films of adults; for the test)"
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
        for k in range(2 * cfg.images_per_class):
            label = ("normal", "tuberculosis")[k % 2]
            entries.append((f"images/{k}.png", encode(draw_xray(rng, label, cfg.image_size), "PNG")))
            lines.append(f"{k}.png,{label},{k}")
        lines.append("odd.png,sarcoidosis,99")
        entries.append(("images/odd.png", encode(draw_xray(rng, "", cfg.image_size), "PNG")))
        write_zip(path, [("labels.csv", ("\\n".join(lines) + "\\n").encode()), *entries])


SOURCE = ToySource()
'''
# The fifth class's look in the twins: one entry in the phantom's FINDINGS (appended to the project's copy).
FIFTH_FINDING = '''

def _apical_cavities(rng, xx, yy, lungs):
    """tuberculosis (the test's fifth class): a bright ring in the top of each lung."""
    finding = np.zeros_like(xx)
    for cx, cy, rx, ry in lungs:
        r = np.hypot((xx - cx) / rx, (yy - cy + 0.55 * ry) / ry * 2)
        finding += rng.uniform(70, 90) * ((r > 0.25) & (r < 0.45))
    return finding


FINDINGS["tuberculosis"] = _apical_cavities
'''


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    root = tmp_path_factory.mktemp("variant")
    project = make_project(root / "repo", {
        **TINY, "train.epochs": 1, "classes": CLASSES, "screening_class": "normal",
        "class_groups": {"pneumonia": REVERSED[:2], "normal": ["normal"], "covid": ["covid"],
                         "tuberculosis": ["tuberculosis"]},
        "merge.counts.tuberculosis": 300,
        "merge.controls.classes": {"pneumonia_bacterial": ["Streptococcus"], "pneumonia_viral": ["SARS"],
                                   "normal": ["No Finding"]},
        "download.archives.toy": {"url": "https://example.invalid/toy.zip", "filename": "toy.zip", "sha256": ""}})
    (project / "src/coronet/data/sources/toy.py").write_text(TOY_SOURCE)
    with (project / "src/coronet/data/phantom.py").open("a") as phantom:
        phantom.write(FIFTH_FINDING)
    touched = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file() and ".git" not in p.parts
                     and not ((ROOT / p.relative_to(project)).is_file()
                              and (ROOT / p.relative_to(project)).read_bytes() == p.read_bytes()))
    assert touched == ["params.yaml", "src/coronet/data/phantom.py", "src/coronet/data/sources/toy.py"]
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "PYTHONPATH": str(project / "src")}
    run_tool(project, "dvc", "repro", env=env)
    return project, env


def test_a_fourth_source_is_its_module_its_params_and_its_twin(variant):
    project, _ = variant
    sources = json.loads((project / "data/raw/sources.json").read_text())["archives"]
    assert list(sources) == ["covid", "kermany", "actualmed", "toy"] and sources["toy"]["url"].startswith(
        "synthetic://toy")
    manifest = pd.read_csv(project / "data/interim/manifest.csv", keep_default_na=False)
    toy = manifest[manifest["source"] == "toy"]
    assert set(toy["label"]) == {"normal", "tuberculosis"} and toy["patient_id"].str.startswith("toy:").all()
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
    assert "toy (A toy hospital (normal and tuberculosis films of adults; for the test))" in card  # its module's title


def test_every_output_follows_the_params_class_order(variant):
    project, env = variant
    assert json.loads((project / "models/run.json").read_text())["model"]["classes"] == CLASSES
    predictions = tables.PREDICTIONS.read(CLASSES, project)
    assert [c.removeprefix("p_") for c in predictions.columns if c.startswith("p_")] == CLASSES
    details = json.loads((project / "metrics/details.json").read_text())
    assert list(details["per_class"]) == CLASSES and list(details["confusion_matrix"]) == CLASSES
    assert all(list(row) == CLASSES for row in details["confusion_matrix"].values())
    headline = json.loads((project / "metrics/metrics.json").read_text())
    assert "normal_sensitivity" in headline and "covid_sensitivity" not in headline  # the screened class of params
    assert set(details["controls"]) == {"normal_rate", "other_source_normal_rate", "normal_rate_n",
                                        "other_source_normal_rate_n"}
    evidence = json.loads((project / "metrics/evidence.json").read_text())
    assert list(evidence["grouped"]["confusion_matrix"]) == ["pneumonia", "normal", "covid", "tuberculosis"]
    assert list(evidence["roc_auc"]) == CLASSES and list(evidence["intervals"]["per_class"]) == CLASSES
    assert sorted(p.stem for p in (project / "metrics/curves/roc").glob("*.csv")) == sorted(CLASSES)
    card = (project / "metrics/model_card.md").read_text()
    rows = [line.split("|")[1].strip() for line in card.splitlines() if line.startswith("| ")
            and line.split("|")[1].strip() in CLASSES]
    assert rows[:5] == CLASSES  # the per-class table, in params order
    assert "normal recall (sensitivity)" in card and "4-class accuracy (pneumonia = pneumonia_viral + " in card

    image = next((project / "data/processed/images").glob("*.png"))
    out = run_tool(project, "coronet", "predict", str(image), "--format", "csv", env=env).stdout.splitlines()[0]
    assert out.split(",")[1:7] == [*(f"p_{c}" for c in CLASSES), "predicted"]
    assert out.split(",")[7:12] == ["predicted_group", "pg_pneumonia", "pg_normal", "pg_covid", "pg_tuberculosis"]


def test_a_fifth_class_is_trained_scored_and_reported(variant):
    """The fifth class's films, drawn by its one FINDINGS entry, reach every split and every output."""
    project, _ = variant
    data = json.loads((project / "metrics/data.json").read_text())
    assert all(data["images"][split]["tuberculosis"] > 0 for split in ("train", "test"))
    details = json.loads((project / "metrics/details.json").read_text())
    assert details["per_class"]["tuberculosis"]["support"] == data["images"]["test"]["tuberculosis"]
    assert sum(details["confusion_matrix"]["tuberculosis"].values()) == data["images"]["test"]["tuberculosis"]
    card = (project / "metrics/model_card.md").read_text()
    assert "| tuberculosis |" in card and "Dense 5 softmax" in card
