"""Data tier: choosing images (counts across patients, decode checks, duplicates) and the synthetic source."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import CLASSES, params_with
from coronet.data.manifest import select
from coronet.data.sources import Candidate, covid, kermany
from coronet.params import MergeParams, SyntheticParams


def cfg(counts: dict[str, int] | None = None, seed: int = 1, role: str = "evaluate") -> MergeParams:
    counts = {c: 0 for c in CLASSES} | (counts or {})
    return MergeParams.parse(params_with({"merge.counts": counts, "seed": seed, "merge.controls.role": role}))


def png(value: int) -> bytes:
    """A 48 x 48 noise image, one per value (big and varied enough to pass the input checks)."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(value).integers(0, 255, (48, 48), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def pool(tmp_path):
    """Covid: 3 patients x 3 images; image 'P0/2' is corrupt and 'P1/2' repeats 'P0/0'."""
    path = tmp_path / "a.zip"
    candidates = []
    with zipfile.ZipFile(path, "w") as z:
        for p in range(3):
            for k in range(3):
                name = f"P{p}/{k}.png"
                data = png(p * 10 + k)
                if (p, k) == (0, 2):
                    data = data[:20]
                if (p, k) == (1, 2):
                    data = png(0)
                z.writestr(name, data)
                candidates.append(Candidate("covid", "covid", f"covid:P{p}", "PA", "", "", "CC BY", str(path), name))
    return candidates


def test_counts_spread_over_patients_first(pool):
    chosen = select(pool, cfg({"covid": 3}))
    assert sorted(r["patient_id"] for r in chosen.rows) == ["covid:P0", "covid:P1", "covid:P2"]


def test_corrupt_and_duplicate_files_are_rejected_and_replaced(pool):
    chosen = select(pool, cfg({"covid": 9}))
    assert len(chosen.rows) == 7
    codes = sorted((r.path, r.code) for r in chosen.rejected)
    assert codes == [("P0/2.png", "undecodable"), ("P1/2.png", "duplicate")] or \
        codes == [("P0/0.png", "duplicate"), ("P0/2.png", "undecodable")]  # whichever copy came second
    assert chosen.shortfall == {"covid": (9, 7)}
    assert len({r["sha256"] for r in chosen.rows}) == 7


def test_selection_is_deterministic_for_a_seed(pool):
    first = select(pool, cfg({"covid": 4}, seed=5)).manifest()
    assert first.equals(select(list(reversed(pool)), cfg({"covid": 4}, seed=5)).manifest())


def test_labels_outside_the_class_list_are_refused(pool):
    stray = [Candidate("tuberculosis", "x", "x:1", "", "", "", "", pool[0].archive, pool[0].original_path)]
    with pytest.raises(ValueError, match="tuberculosis"):
        select(stray, cfg({c: 1 for c in CLASSES}))


def test_synthetic_twins_are_deterministic_and_in_the_real_layouts(tmp_path):
    syn = SyntheticParams(seed=3, images_per_class=6, image_size=96, controls_per_finding=2)
    for run in ("a", "b"):
        covid.SOURCE.write_synthetic(tmp_path / run / "c.zip", syn, CLASSES)
        kermany.SOURCE.write_synthetic(tmp_path / run / "k.zip", syn, CLASSES)
    for name in ("c.zip", "k.zip"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    covid_pool, covid_rejected = covid.SOURCE.candidates(tmp_path / "a" / "c.zip", cfg())
    kermany_pool, _ = kermany.SOURCE.candidates(tmp_path / "a" / "k.zip", cfg())
    assert len([c for c in covid_pool if c.cohort == "pool"]) >= 6
    assert {r.code for r in covid_rejected} >= {"finding", "view", "modality", "missing_file"}
    # The COVID twin's same-source controls: two per finding, each mapped as params map it (or to no class).
    controls = {c.finding: c.label for c in covid_pool if c.cohort == "control"}
    assert controls == {"No Finding": "normal", "Pneumonia/Bacterial/Streptococcus": "pneumonia_bacterial",
                        "Pneumonia/Fungal/Pneumocystis": "", "Pneumonia/Viral/SARS": "pneumonia_viral"}
    assert len([c for c in covid_pool if c.cohort == "control"]) == 8
    labels = [c.label for c in kermany_pool]
    assert min(labels.count(c) for c in CLASSES[1:]) >= 6
    with zipfile.ZipFile(tmp_path / "a" / "k.zip") as z:
        names = z.namelist()
    assert any(n.startswith("__MACOSX/") for n in names)
    assert any("/test/" in n for n in names) and any("/train/" in n for n in names)


def control_pool(tmp_path) -> list[Candidate]:
    """Three COVID-19 patients and three controls: one of a patient of its own, one of a COVID-19 patient
    (patient covid:1 also has a No Finding film), one with no class."""
    path = tmp_path / "c.zip"
    rng = np.random.default_rng(4)
    pool = []
    with zipfile.ZipFile(path, "w") as z:
        for k, (patient, label, cohort, finding) in enumerate([
                ("1", "covid", "pool", "COVID-19"), ("2", "covid", "pool", "COVID-19"), ("3", "covid", "pool", "COVID-19"),
                ("7", "normal", "control", "No Finding"), ("1", "normal", "control", "No Finding"),
                ("8", "", "control", "Lipoid")]):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(buffer, format="PNG")
            z.writestr(f"{k}.png", buffer.getvalue())
            pool.append(Candidate(label, "covid", f"covid:{patient}", "PA", "", "", "", str(path), f"{k}.png", finding,
                                  cohort))
    return pool


@pytest.mark.parametrize("role", ["evaluate", "train"])
def test_controls_share_no_patient_with_what_is_trained_on(tmp_path, role):
    selection = select(control_pool(tmp_path), cfg({"covid": 3}, role=role))
    selection.group_near_duplicates(max_distance=0)
    selection.keep_apart(role)
    cohorts = {r["original_path"]: r["cohort"] for r in selection.rows}
    rejected = selection.rejected_frame().set_index("path")
    if role == "evaluate":  # scored only: the one of a COVID-19 patient is turned down, with its reason
        assert cohorts == {"0.png": "pool", "1.png": "pool", "2.png": "pool", "3.png": "control", "5.png": "control"}
        assert rejected.loc["4.png", "code"] == "control_overlap" and "covid:1" in rejected.loc["4.png", "reason"]
    else:  # those with a class join the pool (mixed), and may share a patient with it; the classless stays apart
        assert cohorts == {"0.png": "pool", "1.png": "pool", "2.png": "pool", "3.png": "mixed", "4.png": "mixed",
                           "5.png": "control"}
        assert rejected.empty


def test_an_external_image_shared_with_the_pool_is_turned_down_with_its_reason(tmp_path):
    """An external source's film that is a copy of a pool image (the same bytes), or of a patient
    the pool holds, must not be scored as unseen; its own films are kept, all of them, apart from the pool."""
    path = tmp_path / "e.zip"
    with zipfile.ZipFile(path, "w") as z:
        for name, value in (("pool/0.png", 0), ("pool/1.png", 1), ("ext/copy.png", 0), ("ext/same-patient.png", 7),
                            ("ext/own-1.png", 8), ("ext/own-2.png", 9)):
            z.writestr(name, png(value))
    pooled = [Candidate("covid", "covid", f"covid:P{k}", "PA", "", "", "", str(path), f"pool/{k}.png") for k in (0, 1)]
    external = [Candidate(label, "actualmed", patient, "PA", "", "", "", str(path), name).in_role("external")
                for label, patient, name in (("covid", "actualmed:A", "ext/copy.png"),
                                             ("covid", "covid:P1", "ext/same-patient.png"),
                                             ("covid", "actualmed:B", "ext/own-1.png"),
                                             ("normal", "actualmed:C", "ext/own-2.png"))]
    selection = select(pooled + external, cfg({"covid": 2}))
    selection.group_near_duplicates(max_distance=0)
    selection.keep_apart("evaluate")
    cohorts = {r["original_path"]: r["cohort"] for r in selection.rows}
    assert cohorts == {"pool/0.png": "pool", "pool/1.png": "pool", "ext/own-1.png": "external",
                       "ext/own-2.png": "external"}
    rejected = selection.rejected_frame().set_index("path")
    assert rejected.loc["ext/copy.png", "code"] == "duplicate" and "same bytes as covid_" in rejected.loc[
        "ext/copy.png", "reason"]
    assert rejected.loc["ext/same-patient.png", "code"] == "external_overlap"
    assert "an external source's image must share nothing" in rejected.loc["ext/same-patient.png", "reason"]
