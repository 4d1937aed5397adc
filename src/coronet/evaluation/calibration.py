"""How far the predicted probabilities can be taken at face value: ECE, Brier score, reliability bins."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _arrays(predictions: pd.DataFrame, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    probs = predictions[[f"p_{c}" for c in classes]].to_numpy(dtype=float)
    onehot = (predictions["label"].to_numpy()[:, None] == np.array(classes)[None, :]).astype(float)
    return probs, onehot


def reliability_bins(predictions: pd.DataFrame, classes: list[str], bins: int) -> pd.DataFrame:
    """Top-label reliability: per confidence bin (equal width on (0, 1]), count, mean confidence, accuracy."""
    probs, onehot = _arrays(predictions, classes)
    confidence = probs.max(axis=1)
    correct = onehot[np.arange(len(probs)), probs.argmax(axis=1)]
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        rows.append({"low": edges[b], "high": edges[b + 1], "count": int(members.sum()),
                     "confidence": float(confidence[members].mean()) if members.any() else np.nan,
                     "accuracy": float(correct[members].mean()) if members.any() else np.nan})
    return pd.DataFrame(rows)


def expected_calibration_error(predictions: pd.DataFrame, classes: list[str], bins: int) -> float:
    """Sum over bins of |accuracy - confidence| weighted by the share of images in the bin."""
    table = reliability_bins(predictions, classes, bins)
    filled = table[table["count"] > 0]
    return float((filled["count"] * (filled["accuracy"] - filled["confidence"]).abs()).sum() / table["count"].sum())


def brier_score(predictions: pd.DataFrame, classes: list[str]) -> float:
    """Mean over images of the squared distance between the probability vector and the one-hot truth."""
    probs, onehot = _arrays(predictions, classes)
    return float(((probs - onehot) ** 2).sum(axis=1).mean())
