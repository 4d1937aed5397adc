"""PNG figures people look at: training curves, confusion matrix, ROC curves, calibration, stress tests."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL.PngImagePlugin import PngInfo
from sklearn.metrics import precision_recall_curve, roc_curve

from coronet.files import atomic_path
from coronet.records import StressRecord, TrainingData


def provenance(trained_on: TrainingData | None) -> PngInfo:
    """PNG text chunks saying what the model that drew the picture was trained on (read them with any PNG tool)."""
    info = PngInfo()
    if trained_on is not None:
        info.add_text("trained_on", trained_on.statement())
        info.add_text("training_data", "synthetic" if trained_on.synthetic else "real")
    return info


def stamp(path: Path, trained_on: TrainingData) -> None:
    """Writes under a figure, in a band of its own, what the model was trained on (red for a synthetic one), and
    keeps it in the PNG's text chunks too: a figure passed around alone still says it."""
    from PIL import Image, ImageDraw

    with Image.open(path) as source:
        figure = source.convert("RGB")
    size = max(12, figure.width // 60)
    band = int(size * 1.8)
    out = Image.new("RGB", (figure.width, figure.height + band), (255, 255, 255))
    out.paste(figure, (0, 0))
    draw = ImageDraw.Draw(out)
    draw.rectangle([0, figure.height, figure.width, figure.height + band],
                   fill=(170, 20, 20) if trained_on.synthetic else (40, 40, 40))
    draw.text((size // 2, figure.height + size // 3), trained_on.label(), fill=(255, 255, 255), font_size=size)
    with atomic_path(path, suffix=".png") as tmp:
        out.save(tmp, format="PNG", pnginfo=provenance(trained_on))


def save_figure(fig: plt.Figure, path: Path) -> None:
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
    save_figure(fig, path)


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
    save_figure(fig, path)


def curve_tables(predictions: pd.DataFrame, classes: list[str], reliability: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The curves as data (relative file name -> table), so `dvc plots diff` overlays them across versions:
    one-vs-rest ROC and precision-recall per class, from the probability columns of predictions.csv, and
    the reliability table. A class without both positives and negatives in the test split has no curve."""
    tables = {}
    for name in classes:
        truth = (predictions["label"] == name).to_numpy()
        if truth.all() or not truth.any():
            continue
        fpr, tpr, _ = roc_curve(truth, predictions[f"p_{name}"])
        tables[f"roc/{name}.csv"] = pd.DataFrame({"fpr": fpr.round(6), "tpr": tpr.round(6)})
        tables[f"precision_recall/{name}.csv"] = interpolated_precision_recall(truth, predictions[f"p_{name}"])
    filled = reliability[reliability["count"] > 0]
    tables["calibration.csv"] = filled[["confidence", "accuracy", "count"]].round(6)
    return tables


def interpolated_precision_recall(truth: np.ndarray, scores: pd.Series) -> pd.DataFrame:
    """One point per recall, in recall order: the interpolated curve (the best precision at that recall or
    above). scikit-learn's raw points share recalls (each threshold that only adds false positives), and a
    line through them drew drops the model does not have."""
    precision, recall, _ = precision_recall_curve(truth, scores)  # recall falls from 1 to 0
    frame = pd.DataFrame({"recall": recall, "precision": np.maximum.accumulate(precision)})
    frame = frame.groupby("recall", as_index=False)["precision"].max()
    return frame.round(6)


def roc_figure(curves: dict[str, pd.DataFrame], classes: list[str], path: Path) -> None:
    """One-vs-rest ROC curve per class, from :func:`curve_tables`."""
    fig, ax = plt.subplots(figsize=(6, 5))
    for name in classes:
        if f"roc/{name}.csv" in curves:
            ax.plot(curves[f"roc/{name}.csv"]["fpr"], curves[f"roc/{name}.csv"]["tpr"], label=name)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC, one class against the rest")
    ax.legend(loc="lower right")
    save_figure(fig, path)


def reliability_figure(table: pd.DataFrame, path: Path, ece: float) -> None:
    """Top-label reliability diagram: accuracy against confidence per bin, with bin counts."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    filled = table[table["count"] > 0]
    centres = (table["low"] + table["high"]) / 2
    ax.bar(centres, table["accuracy"].fillna(0), width=(table["high"] - table["low"]) * 0.9, alpha=0.7,
           edgecolor="black", label="accuracy in bin")
    ax.plot(filled["confidence"], filled["accuracy"], "o", color="C1", label="accuracy at mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    for centre, count in zip(centres, table["count"], strict=True):
        if count:
            ax.text(centre, 0.02, str(count), ha="center", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top predicted probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability (ECE {ece:.3f}); numbers: images per bin")
    ax.legend(loc="upper left")
    save_figure(fig, path)


def stress_figure(results: StressRecord, classes: list[str], path: Path) -> None:
    """Flip rates per transform and strength: all changed predictions, and changes towards each class."""
    rows, values = [], []
    for name, by_strength in results.transforms.items():
        for strength, stats in by_strength.items():
            rows.append(f"{name} {strength}")
            values.append([stats["flip_rate"], *(stats["flip_to"][c] if stats["flip_to"][c] is not None else np.nan
                                                 for c in classes)])
    columns = ["any change", *(f"to {c}" for c in classes)]
    matrix = np.array(values, dtype=float).reshape(len(rows), len(columns))
    fig, ax = plt.subplots(figsize=(1.5 * len(columns) + 3, 0.42 * len(rows) + 1.8))
    ax.imshow(matrix, cmap="Reds", vmin=0, vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, "n/a" if np.isnan(v) else f"{100 * v:.0f}%", ha="center", va="center",
                color="white" if v > 0.6 else "black", fontsize=9)
    ax.set_xticks(range(len(columns)), columns, rotation=20, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(f"Stress tests: share of {results.images} test predictions that change\n"
                 "(to c: of the images not predicted c before, the share predicted c after)")
    save_figure(fig, path)
