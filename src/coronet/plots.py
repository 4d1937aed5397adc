"""PNG figures people look at: training curves, confusion matrix, ROC curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from coronet.files import atomic_path


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)


def training_curves(history: pd.DataFrame, path: Path) -> None:
    """Accuracy and loss per epoch, training and validation (the paper's Figure 5)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        ax.plot(history["epoch"], history[metric], marker="o", label=f"training {metric}")
        ax.plot(history["epoch"], history[f"val_{metric}"], marker="o", label=f"validation {metric}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("CoroNet training curves")
    _save(fig, path)


def confusion_matrix_figure(matrix: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(1.6 * len(classes) + 2, 1.4 * len(classes) + 1.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    peak = matrix.max() if matrix.size else 0
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center",
                    color="white" if peak and matrix[i, j] > peak / 2 else "black")
    ax.set_title(title)
    _save(fig, path)


def roc_figure(predictions: pd.DataFrame, classes: list[str], path: Path) -> None:
    """One-vs-rest ROC curve per class from the probability columns of predictions.csv."""
    fig, ax = plt.subplots(figsize=(6, 5))
    for name in classes:
        truth = (predictions["label"] == name).to_numpy()
        if truth.all() or not truth.any():
            continue  # undefined without both positives and negatives
        fpr, tpr, _ = roc_curve(truth, predictions[f"p_{name}"])
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC, one class against the rest")
    ax.legend(loc="lower right")
    _save(fig, path)


def gradcam_panel(model: object, test: pd.DataFrame, predictions: pd.DataFrame, classes: list[str],
                  image_size: int, per_class: int, path: Path) -> None:
    """A grid of Grad-CAM overlays: per actual class (rows), up to ``per_class`` correct and
    ``per_class`` wrong test images, first by id, so reruns show the same images."""
    from coronet.gradcam import gradcam, overlay
    from coronet.images import decode_grayscale, model_input

    merged = test[["id", "path"]].merge(predictions, on="id").sort_values("id")
    columns = 2 * per_class
    fig, axes = plt.subplots(len(classes), columns, figsize=(2.2 * columns, 2.4 * len(classes)), squeeze=False)
    for row, name in enumerate(classes):
        actual = merged[merged["label"] == name]
        right = actual[actual["predicted"] == name].head(per_class)
        wrong = actual[actual["predicted"] != name].head(per_class)
        picks = [*right.itertuples(), *wrong.itertuples()]
        for col in range(columns):
            ax = axes[row, col]
            ax.axis("off")
            if col >= len(picks):
                continue
            item = picks[col]
            array = np.asarray(model_input(decode_grayscale(Path(item.path).read_bytes()), image_size))
            heatmap, _ = gradcam(model, array)
            ax.imshow(overlay(array[..., 0].astype(np.uint8), heatmap))
            mark = "right" if item.predicted == name else f"wrong: {item.predicted}"
            ax.set_title(f"{mark} {getattr(item, f'p_{item.predicted}'):.2f}", fontsize=8)
        axes[row, 0].text(-0.1, 0.5, name, transform=axes[row, 0].transAxes, rotation=90, ha="right",
                          va="center", fontsize=9)
    fig.suptitle("Grad-CAM on test images (rows: actual class)")
    _save(fig, path)
