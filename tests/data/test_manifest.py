"""Data tier: choosing images (counts across patients, decode checks, duplicates) and the synthetic source."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from coronet import synthetic
from coronet.manifest import select
from coronet.sources import Candidate, covid, kermany

CLASSES = ["covid", "normal", "pneumonia_bacterial", "pneumonia_viral"]


def png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def pool(tmp_path):
    """covid: 3 patients x 3 images; image 'P0/2' is corrupt and 'P1/2' repeats 'P0/0'."""
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
    chosen = select(pool, {"covid": 3, "normal": 0, "pneumonia_bacterial": 0, "pneumonia_viral": 0}, CLASSES, 1)
    assert sorted(r["patient_id"] for r in chosen.rows) == ["covid:P0", "covid:P1", "covid:P2"]


def test_corrupt_and_duplicate_files_are_rejected_and_replaced(pool):
    chosen = select(pool, {"covid": 9, "normal": 0, "pneumonia_bacterial": 0, "pneumonia_viral": 0}, CLASSES, 1)
    assert len(chosen.rows) == 7
    codes = sorted((r.path, r.code) for r in chosen.rejected)
    assert codes == [("P0/2.png", "undecodable"), ("P1/2.png", "duplicate")] or \
        codes == [("P0/0.png", "duplicate"), ("P0/2.png", "undecodable")]  # whichever copy came second
    assert chosen.shortfall == {"covid": (9, 7)}
    assert len({r["sha256"] for r in chosen.rows}) == 7


def test_selection_is_deterministic_for_a_seed(pool):
    counts = {"covid": 4, "normal": 0, "pneumonia_bacterial": 0, "pneumonia_viral": 0}
    first = select(pool, counts, CLASSES, 5).manifest()
    assert first.equals(select(list(reversed(pool)), counts, CLASSES, 5).manifest())


def test_labels_outside_the_class_list_are_refused(pool):
    stray = [Candidate("tuberculosis", "x", "x:1", "", "", "", "", pool[0].archive, pool[0].original_path)]
    with pytest.raises(ValueError, match="tuberculosis"):
        select(stray, {c: 1 for c in CLASSES}, CLASSES, 0)


def test_synthetic_archives_are_deterministic_and_in_the_real_layouts(tmp_path):
    for run in ("a", "b"):
        synthetic.write_archives(tmp_path / run / "c.zip", tmp_path / run / "k.zip", 3, 6, 96)
    for name in ("c.zip", "k.zip"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    covid_pool, covid_rejected = covid.candidates(tmp_path / "a" / "c.zip", ["PA", "AP", "AP Supine"], "COVID-19")
    kermany_pool, _ = kermany.candidates(tmp_path / "a" / "k.zip")
    assert len(covid_pool) >= 6 and {r.code for r in covid_rejected} >= {"finding", "view", "modality", "missing_file"}
    labels = [c.label for c in kermany_pool]
    assert min(labels.count(c) for c in CLASSES[1:]) >= 6
    with zipfile.ZipFile(tmp_path / "a" / "k.zip") as z:
        names = z.namelist()
    assert any(n.startswith("__MACOSX/") for n in names)
    assert any("/test/" in n for n in names) and any("/train/" in n for n in names)
