"""Data tier: duplicates by what an image shows: identical pixels turned down, near duplicates grouped
across patients and kept in one split."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image, PngImagePlugin

from conftest import CLASSES, encoded, params_with
from coronet.data.duplicates import connected_groups
from coronet.data.manifest import select
from coronet.data.phantom import draw_xray
from coronet.data.sources import Candidate
from coronet.data.split import assign_splits, check_leakage
from coronet.params import MergeParams


@pytest.fixture
def duplicate_pool(tmp_path):
    """Six covid films of six patients, plus: film 0 saved again with other bytes (a PNG text chunk) under
    patient 90, film 1 rescaled to 60% under patient 91, film 2 cropped by 3% per side under patient 92."""
    rng = np.random.default_rng(5)
    films = [draw_xray(rng, "covid", 256) for _ in range(6)]
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "another uploader")
    entries = {f"p{k}.png": encoded(film) for k, film in enumerate(films)}
    entries["p90.png"] = encoded(films[0], pnginfo=info)
    entries["p91.png"] = encoded(np.asarray(Image.fromarray(films[1]).resize((154, 154), Image.Resampling.LANCZOS)))
    entries["p92.png"] = encoded(films[2][8:-8, 8:-8])
    path = tmp_path / "covid.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    pool = [Candidate("covid", "covid", f"covid:{name[1:-4]}", "PA", "", "", "", str(path), name) for name in entries]
    return pool, entries


def test_identical_pixels_are_rejected_and_near_duplicates_grouped(duplicate_pool):
    pool, entries = duplicate_pool
    assert entries["p0.png"] != entries["p90.png"]  # different bytes, the same picture
    cfg = MergeParams.parse(params_with({"merge.counts": {c: 100 if c == "covid" else 0 for c in CLASSES}, "seed": 3}))
    selection = select(pool, cfg)
    selection.group_near_duplicates(max_distance=24)
    manifest = selection.manifest().set_index("original_path")
    rejected = selection.rejected_frame()
    assert list(rejected["code"]) == ["duplicate_pixels"]
    (dropped,) = set(rejected["path"])
    kept = "p0.png" if dropped == "p90.png" else "p90.png"
    assert dropped in {"p0.png", "p90.png"} and rejected["duplicate_of"].iloc[0] == manifest.loc[kept, "id"]
    assert rejected["label"].iloc[0] == "covid"
    pairs = {frozenset(p) for p in zip(selection.near_duplicates["id_a"], selection.near_duplicates["id_b"],
                                       strict=True)}
    ids = manifest["id"]
    assert pairs == {frozenset((ids["p1.png"], ids["p91.png"])), frozenset((ids["p2.png"], ids["p92.png"]))}
    groups = manifest["near_duplicate_group"]
    assert groups["p1.png"] == groups["p91.png"] != groups["p2.png"] == groups["p92.png"]
    assert groups.nunique() == len(manifest) - 2

    # The same selection from the pool in another order keeps the same copy (deterministic).
    again = select(list(reversed(pool)), cfg)
    assert set(again.rejected_frame()["path"]) == {dropped}


def test_split_keeps_near_duplicates_of_different_patients_together():
    rows = []
    for k in range(80):
        label = CLASSES[k % 4]
        # Pairs of near duplicates uploaded under two patients: (0, 1), (2, 3), ...
        rows.append({"id": f"img{k:03d}", "label": label if k % 8 < 4 else CLASSES[(k - 1) % 4],
                     "patient_id": f"P{k}", "sha256": f"s{k}", "near_duplicate_group": f"img{k - k % 2:03d}"})
    frame = pd.DataFrame(rows)
    for group_by in ("patient", "none"):
        merged = frame.merge(assign_splits(frame, 0.2, 0.1, group_by, seed=4), on="id")
        assert (merged.groupby("near_duplicate_group")["split"].nunique() == 1).all()
        assert check_leakage(merged, group_by)["near_duplicate_groups_shared"] == 0


def test_connected_groups_chain_links_across_columns():
    frame = pd.DataFrame({"patient_id": ["a", "a", "b", "c", "d"], "group": ["1", "2", "2", "3", "4"]})
    component = connected_groups(frame, ["patient_id", "group"])
    assert component[0] == component[1] == component[2] != component[3] != component[4]
