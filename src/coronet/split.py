"""Train / val / test assignment: stratified by class and grouped by patient (or by image, as the paper)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

SPLITS = ("train", "val", "test")


class LeakageError(AssertionError):
    """A patient or an identical image sits in two splits where the split promised it would not."""


def _holdout(frame: pd.DataFrame, share: float, group_by: str, seed: int) -> np.ndarray:
    """Boolean mask of a held-out part of about ``share`` of ``frame``."""
    if group_by == "patient":
        # One fold of k ~ 1/share grouped, stratified folds: the nearest grouped equivalent of share.
        # scikit-learn needs every class to have k members, so tiny sets get fewer, larger folds.
        folds = max(2, min(round(1 / share), int(frame["label"].value_counts().min())))
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        _, held = next(splitter.split(frame, frame["label"], groups=frame["patient_id"]))
    elif group_by == "none":
        _, held = train_test_split(np.arange(len(frame)), test_size=share, stratify=frame["label"],
                                   random_state=seed)
    else:
        raise ValueError(f"split.group_by must be 'patient' or 'none', got {group_by!r}")
    mask = np.zeros(len(frame), dtype=bool)
    mask[held] = True
    return mask


def assign_splits(index: pd.DataFrame, test_size: float, val_size: float, group_by: str, seed: int) -> pd.DataFrame:
    """id, split for every image. Deterministic: rows are ordered by id before anything random."""
    frame = index.sort_values("id", ignore_index=True)
    split = np.full(len(frame), "train", dtype=object)
    test = _holdout(frame, test_size, group_by, seed)
    split[test] = "test"
    rest = np.flatnonzero(~test)
    val = _holdout(frame.iloc[rest].reset_index(drop=True), val_size, group_by, seed + 1)
    split[rest[val]] = "val"
    return pd.DataFrame({"id": frame["id"], "split": split})


def shared_between_splits(frame: pd.DataFrame, column: str) -> int:
    """How many distinct values of ``column`` occur in more than one split."""
    return int((frame.groupby(column)["split"].nunique() > 1).sum())


def leakage_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Patients, and identical images (same original or processed bytes), found in more than one split."""
    hashes = [c for c in ("sha256", "png_sha256") if c in frame.columns]
    return {"patients_shared": shared_between_splits(frame, "patient_id"),
            "images_shared": max(shared_between_splits(frame, c) for c in hashes)}


def check_leakage(frame: pd.DataFrame, group_by: str) -> dict[str, int]:
    """Counts shared patients and identical images; raises when the split promised none."""
    counts = leakage_counts(frame)
    if counts["images_shared"]:
        raise LeakageError(f"{counts['images_shared']} identical image(s) appear in more than one split")
    if group_by == "patient" and counts["patients_shared"]:
        raise LeakageError(f"{counts['patients_shared']} patient(s) appear in more than one split")
    return counts


def split_summary(frame: pd.DataFrame, classes: list[str]) -> dict[str, dict[str, int]]:
    """Images per class per split, plus totals and patients: nested dicts for DVC metrics."""
    summary: dict[str, dict[str, int]] = {}
    for name in SPLITS:
        part = frame[frame["split"] == name]
        counts = part["label"].value_counts()
        summary[name] = {c: int(counts.get(c, 0)) for c in classes}
        summary[name]["total"] = len(part)
        summary[name]["patients"] = int(part["patient_id"].nunique())
    return summary
