"""The evaluate stage's steps: one prediction pass over every image, the curves as data, the figures,
the stress tests and the warnings a reader must see. Each writes only where it is told to."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coronet import stress
from coronet.calibration import reliability_bins
from coronet.confounds import PROBE_WARNING_AUC
from coronet.files import atomic_dir, write_csv, write_json
from coronet.params import Section


def check_params(cfg: Section) -> tuple[int, dict[str, list[float]], float]:
    """Refuses evaluate params that would fail later; returns (batch size, stress transforms, warn rate)."""
    batch = cfg.integer("batch_size", 1)
    cfg.number("ci_level", 0, 1, inclusive=False)
    for key, low in (("gradcam_per_class", 0), ("bootstrap_resamples", 1), ("calibration_bins", 1), ("probe_folds", 2)):
        cfg.integer(key, low)
    transforms, warn_flip_rate = stress.check_params(cfg["stress"])
    return batch, transforms, warn_flip_rate


def predict_all(classifier: Any, images: pd.DataFrame, batch: int, path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """One forward pass over every image: the test rows' class probabilities, written to ``path`` and
    read back (every metric comes from the file itself), and every image's penultimate features (the
    confound probe uses all splits)."""
    import keras

    from coronet.dataset import make_dataset
    from coronet.model import PENULTIMATE

    classes, is_test = classifier.classes, (images["split"] == "test").to_numpy()
    both = keras.Model(classifier.model.inputs, [classifier.model.get_layer(PENULTIMATE).output,
                                                 classifier.model.output])
    features, probs = both.predict(make_dataset(images, classes, classifier.image_size, batch), verbose=1)
    probs, test = np.asarray(probs)[is_test], images[is_test]
    predictions = pd.DataFrame({"id": test["id"].to_numpy(), "label": test["label"].to_numpy(),
                                "predicted": [classes[i] for i in probs.argmax(axis=1)]})
    for i, name in enumerate(classes):
        predictions[f"p_{name}"] = probs[:, i].round(6)
    write_csv(path, predictions)
    return pd.read_csv(path), np.asarray(features)


def write_curves(predictions: pd.DataFrame, classes: list[str], bins: int, folder: Path) -> dict[str, pd.DataFrame]:
    """ROC and precision-recall per class (one file each: `dvc plots` draws them across versions) and the
    reliability points, under ``folder``; returns them with the reliability table."""
    from coronet.plots import curve_tables

    reliability = reliability_bins(predictions, classes, bins)
    curves = curve_tables(predictions, classes, reliability)
    for kind in ("roc", "precision_recall"):
        with atomic_dir(folder / kind) as tmp:
            for name, table in curves.items():
                if name.startswith(f"{kind}/"):
                    table.to_csv(tmp / Path(name).name, index=False)
    write_csv(folder / "calibration.csv", curves["calibration.csv"])
    return {**curves, "reliability": reliability}


def write_figures(predictions: pd.DataFrame, test: pd.DataFrame, classifier: Any, curves: dict[str, pd.DataFrame],
                  ece: float, history: Path, per_class: int, folder: Path) -> None:
    from coronet.gradcam import gradcam_panel
    from coronet.metrics import confusion
    from coronet.plots import confusion_matrix_figure, reliability_figure, roc_figure, training_curves

    classes = classifier.classes
    training_curves(pd.read_csv(history), folder / "training_curves.png")
    confusion_matrix_figure(confusion(predictions, classes), classes, folder / "confusion_matrix.png",
                            "CoroNet test confusion matrix")
    roc_figure(curves, classes, folder / "roc.png")
    reliability_figure(curves["reliability"], folder / "reliability.png", ece)
    gradcam_panel(classifier.model, test, predictions, classes, classifier.image_size, per_class,
                  folder / "gradcam_panel.png")


def stress_tests(classifier: Any, test: pd.DataFrame, transforms: dict[str, list[float]], warn_flip_rate: float,
                 seed: int, batch: int, path: Path, figure: Path) -> dict[str, Any]:
    """Nuisance transforms of the test images through the loaded model: does the answer follow the frame?"""
    from coronet.plots import stress_figure

    started = time.monotonic()
    results = stress.run(classifier, stress.load_images(list(test["path"])), list(test["label"]), transforms, seed,
                         batch)
    results.update(warn_flip_rate=warn_flip_rate, warnings=stress.warnings(results, warn_flip_rate))
    write_json(path, results)
    stress_figure(results, classifier.classes, figure)
    print(f"stress tests: {sum(map(len, transforms.values()))} transformed copies of {len(test)} test images in "
          f"{time.monotonic() - started:.1f} s")
    return results


def shortcut_warnings(metrics: dict[str, Any], stressed: dict[str, Any]) -> list[str]:
    """What a reader of the numbers must not miss: a predictable source, predictions that follow a frame."""
    found = [f"the image source is predictable from {name.replace('_', ' ')} (AUC {probe['auc']:.3f}): the data "
             "permit a shortcut" for name, probe in metrics["confound_probe"].items()
             if isinstance(probe, dict) and probe.get("auc", 0) >= PROBE_WARNING_AUC]
    return [f"warning: {text}; see metrics/model_card.md" for text in [*found, *stressed["warnings"]]]
