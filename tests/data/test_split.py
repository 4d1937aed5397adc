"""Data tier: splits are patient-disjoint, stratified and deterministic (property-based)."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import CLASSES
from coronet.data.split import LeakageError, assign_splits, check_leakage


def manifest(images_per_patient: list[int], seed: int = 0) -> pd.DataFrame:
    rows = []
    for p, n in enumerate(images_per_patient):
        label = CLASSES[p % 4]
        for k in range(n):
            digest = f"{p:04d}{k:04d}"
            rows.append({"id": f"img{p}_{k}", "label": label, "patient_id": f"P{p}", "sha256": digest,
                         "png_sha256": "x" + digest})
    return pd.DataFrame(rows).sample(frac=1, random_state=seed)  # row order must not matter


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=60, max_size=140), st.integers(0, 10_000))
def test_patient_split_is_disjoint_and_deterministic(sizes, seed):
    frame = manifest(sizes)
    first = assign_splits(frame, 0.2, 0.1, "patient", seed)
    again = assign_splits(manifest(sizes, seed=1), 0.2, 0.1, "patient", seed)
    pd.testing.assert_frame_equal(first, again)
    merged = frame.merge(first, on="id")
    assert check_leakage(merged, "patient") == {"patients_shared": 0, "images_shared": 0}
    assert set(merged["split"]) == {"train", "val", "test"}
    share = (merged["split"] == "test").mean()
    assert 0.08 < share < 0.35  # about a fifth; patients come whole, so not exactly


def test_image_level_split_is_stratified():
    frame = manifest([1] * 200)
    merged = frame.merge(assign_splits(frame, 0.2, 0.1, "none", 7), on="id")
    counts = pd.crosstab(merged["label"], merged["split"])
    assert (counts["test"] == 10).all()  # 50 per class, a fifth each
    assert len(merged) == 200


def test_leakage_is_reported_and_enforced():
    frame = manifest([3] * 40)
    merged = frame.merge(assign_splits(frame, 0.2, 0.1, "none", 3), on="id")
    report = check_leakage(merged, "none")  # the paper's split shares patients: counted, allowed
    assert report["patients_shared"] > 0 and report["images_shared"] == 0
    with pytest.raises(LeakageError, match="patient"):
        check_leakage(merged, "patient")
    merged.loc[merged.index[0], "sha256"] = merged.loc[merged["split"] != merged["split"].iloc[0], "sha256"].iloc[0]
    with pytest.raises(LeakageError, match="identical image"):
        check_leakage(merged, "none")


def test_controls_form_their_own_split_and_share_nothing():
    frame = manifest([2] * 60)
    frame["cohort"] = "pool"
    controls = pd.DataFrame([{"id": f"c{k}", "label": ["normal", ""][k % 2], "patient_id": f"C{k}", "sha256": f"c{k}",
                              "png_sha256": f"xc{k}", "cohort": "control"} for k in range(6)])
    both = pd.concat([frame, controls], ignore_index=True)
    splits = assign_splits(both, 0.2, 0.1, "patient", 3)
    merged = both.merge(splits, on="id")
    assert set(merged.loc[merged["cohort"] == "control", "split"]) == {"control"}
    assert set(merged.loc[merged["cohort"] == "pool", "split"]) == {"train", "val", "test"}
    # the pool's assignment does not depend on the controls being there
    pd.testing.assert_frame_equal(splits[splits["split"] != "control"].reset_index(drop=True),
                                  assign_splits(frame, 0.2, 0.1, "patient", 3))
    assert check_leakage(merged, "patient")["patients_shared"] == 0
    merged.loc[merged["id"] == "c0", "patient_id"] = merged.loc[merged["split"] == "train", "patient_id"].iloc[0]
    with pytest.raises(LeakageError, match="patient"):  # a control of a training patient is leakage
        check_leakage(merged, "patient")


def test_an_external_source_is_never_trained_on_nor_validated_on():
    """The external source's images (cohort external) form their own split, whatever the seed; the
    pool's split is the same with or without them."""
    frame = manifest([2] * 60)
    frame["cohort"] = "pool"
    external = pd.DataFrame([{"id": f"e{k}", "label": ["covid", "normal"][k % 2], "patient_id": f"E{k}",
                              "sha256": f"e{k}", "png_sha256": f"xe{k}", "cohort": "external"} for k in range(10)])
    both = pd.concat([frame, external], ignore_index=True)
    for seed in range(5):
        splits = assign_splits(both, 0.2, 0.1, "patient", seed).merge(both[["id", "cohort"]], on="id")
        assert set(splits.loc[splits["cohort"] == "external", "split"]) == {"external"}
        assert not set(splits.loc[splits["cohort"] == "pool", "split"]) & {"external", "control"}
        pd.testing.assert_frame_equal(splits.loc[splits["cohort"] == "pool", ["id", "split"]].reset_index(drop=True),
                                      assign_splits(frame, 0.2, 0.1, "patient", seed))
