"""Train / val / test assignment: stratified by class and grouped, so that no patient (with
``group_by: patient``), no identical image and no group of near duplicates spans two splits. The
same-source controls that are only scored (manifest cohort ``control``) form a split of their own,
``control``, an external source's images (cohort ``external``) another, ``external``, and the films only scored
against a class group (cohort ``scored``: NIH's pneumonias) a third, ``scored``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from coronet.data.duplicates import connected_groups
from coronet.errors import DataError

SPLITS = ("train", "val", "test")
CONTROL = "control"  # never trained on, never in the test metrics: scored on its own
EXTERNAL = "external"  # an external source's images: never trained on, never in validation, scored on their own
SCORED = "scored"  # films of a finding no class names exactly: never trained on, scored against their group
SCORED_SPLITS = {"control": CONTROL, "external": EXTERNAL, "scored": SCORED}  # manifest cohort -> its own split
# Columns whose equal values must share a split whatever group_by says: identical originals, identical
# decoded pixels, identical processed PNGs, and merge's near-duplicate groups.
IMAGE_KEYS = ("sha256", "pixel_sha256", "png_sha256", "near_duplicate_group")


class LeakageError(AssertionError):
    """A patient or an identical image sits in two splits where the split promised it would not (a bug)."""


def split_groups(frame: pd.DataFrame, group_by: str) -> np.ndarray:
    """The unit the split moves whole: connected images (same patient if grouped by patient, same image,
    near duplicates), however the links chain."""
    if group_by not in ("patient", "none"):
        raise ValueError(f"split.group_by must be patient or none, got {group_by!r}")
    columns = (["patient_id"] if group_by == "patient" else []) + [c for c in IMAGE_KEYS if c in frame.columns]
    return connected_groups(frame, columns)


def _holdout(frame: pd.DataFrame, groups: np.ndarray, share: float, seed: int, what: str) -> np.ndarray:
    """Boolean mask of a held-out part of about ``share`` of ``frame``, whole groups only.

    One fold of k ~ 1/share grouped, stratified folds. Every class needs a group in each fold, so a
    class with few groups gets fewer, larger folds; one with fewer than two groups cannot be split.
    """
    groups_per_class = pd.Series(groups).groupby(frame["label"].to_numpy()).nunique()
    if groups_per_class.min() < 2:
        thin = ", ".join(f"{label} ({n})" for label, n in groups_per_class.items() if n < 2)
        raise DataError(f"cannot hold out a {what} split: class {thin} has fewer than 2 independent groups of images "
                        "(patients, or copies and near duplicates of one image). Add data for it, or remove it from "
                        "params classes.")
    folds = max(2, min(round(1 / share), int(groups_per_class.min())))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    _, held = next(splitter.split(frame, frame["label"], groups=groups))
    mask = np.zeros(len(frame), dtype=bool)
    mask[held] = True
    return mask


def assign_splits(index: pd.DataFrame, test_size: float, val_size: float, group_by: str, seed: int) -> pd.DataFrame:
    """id, split for every image: the controls and the external sources' images (cohorts ``control``,
    ``external``) each in their own split, the rest in train, val and test. Deterministic: rows are ordered by
    id before anything random."""
    frame = index.sort_values("id", ignore_index=True)
    if "cohort" in frame.columns:
        scored = frame["cohort"].isin(list(SCORED_SPLITS))
        rest = assign_splits(frame[~scored].drop(columns="cohort"), test_size, val_size, group_by, seed)
        apart = pd.DataFrame({"id": frame.loc[scored, "id"], "split": frame.loc[scored, "cohort"].map(SCORED_SPLITS)})
        return pd.concat([rest, apart]).sort_values("id", ignore_index=True)
    groups = split_groups(frame, group_by)
    split = np.full(len(frame), "train", dtype=object)
    test = _holdout(frame, groups, test_size, seed, "test")
    split[test] = "test"
    rest = np.flatnonzero(~test)
    val = _holdout(frame.iloc[rest].reset_index(drop=True), groups[rest], val_size, seed + 1, "validation")
    split[rest[val]] = "val"
    for name in ("train", "test"):
        absent = sorted(set(frame["label"]) - set(frame.loc[split == name, "label"]))
        if absent:
            raise DataError(f"the {name} split has no image of class {absent}: too few independent groups of images "
                            "for a grouped split. Add data for that class, or try another seed.")
    return pd.DataFrame({"id": frame["id"], "split": split})


def shared_between_splits(frame: pd.DataFrame, column: str) -> int:
    """How many distinct values of ``column`` occur in more than one split."""
    return int((frame.groupby(column)["split"].nunique() > 1).sum())


def leakage_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Patients, identical images (same original bytes, decoded pixels or processed bytes), and near-duplicate
    groups found in more than one split (the last only where merge grouped near duplicates)."""
    hashes = [c for c in ("sha256", "pixel_sha256", "png_sha256") if c in frame.columns]
    counts = {"patients_shared": shared_between_splits(frame, "patient_id"),
              "images_shared": max(shared_between_splits(frame, c) for c in hashes)}
    if "near_duplicate_group" in frame.columns:
        counts["near_duplicate_groups_shared"] = shared_between_splits(frame, "near_duplicate_group")
    return counts


def check_leakage(frame: pd.DataFrame, group_by: str) -> dict[str, int]:
    """Counts shared patients and identical images; raises when the split promised none."""
    counts = leakage_counts(frame)
    if counts["images_shared"]:
        raise LeakageError(f"{counts['images_shared']} identical image(s) appear in more than one split")
    if counts.get("near_duplicate_groups_shared"):
        raise LeakageError(f"{counts['near_duplicate_groups_shared']} near-duplicate group(s) span two splits")
    if group_by == "patient" and counts["patients_shared"]:
        raise LeakageError(f"{counts['patients_shared']} patient(s) appear in more than one split")
    return counts


def split_summary(frame: pd.DataFrame, classes: list[str]) -> dict[str, dict[str, int]]:
    """Images per class per split (the control and external splits too, where there are), plus totals and
    patients."""
    summary: dict[str, dict[str, int]] = {}
    for name in [*SPLITS, *(s for s in SCORED_SPLITS.values() if (frame["split"] == s).any())]:
        part = frame[frame["split"] == name]
        counts = part["label"].value_counts()
        summary[name] = {c: int(counts.get(c, 0)) for c in classes}
        summary[name]["total"] = len(part)
        summary[name]["patients"] = int(part["patient_id"].nunique())
    return summary
