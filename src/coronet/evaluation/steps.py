"""The evaluate stage's steps: one prediction pass over every image, the curves as data, the figures,
the stress tests and the warnings a reader must see. Each writes only where it is told to."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coronet.evaluation import stress, tables
from coronet.evaluation.calibration import reliability_bins
from coronet.evaluation.confounds import PROBE_WARNING_AUC
from coronet.evaluation.controls import (
    clearly_above,
    control_rows,
    external_rows,
    external_warnings,
    scored_rows,
    scored_warnings,
)
from coronet.files import atomic_dir, write_csv
from coronet.params import StressParams
from coronet.records import EvidenceRecord, StressRecord


def predict_all(classifier: Any, images: pd.DataFrame, batch: int
                ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, np.ndarray]:
    """One forward pass over every image: the test rows' class probabilities (written to
    ``metrics/predictions.csv`` and read back: every metric comes from the file itself), the scored controls',
    the external sources', the films only scored against a class group (each its own table, see
    :mod:`coronet.evaluation.tables`), and every image's penultimate features (the confound probe uses all
    splits)."""
    import keras

    from coronet.model.dataset import make_dataset
    from coronet.model.network import PENULTIMATE

    classes = classifier.classes
    both = keras.Model(classifier.model.inputs, [classifier.model.get_layer(PENULTIMATE).output,
                                                 classifier.model.output])
    features, probs = both.predict(make_dataset(images, classes, classifier.image_size, batch, labelled=False),
                                   verbose=1 if sys.stderr.isatty() else 0)
    probs = np.asarray(probs)
    rows = {tables.PREDICTIONS: (images["split"] == "test").to_numpy(), tables.CONTROLS: control_rows(images),
            tables.EXTERNAL: external_rows(images), tables.SCORED: scored_rows(images)}
    for table, mask in rows.items():
        table.write(images[mask], probs[mask], classes)
    return (*(table.read(classes) for table in tables.ALL), np.asarray(features))


def write_curves(predictions: pd.DataFrame, classes: list[str], bins: int, folder: Path) -> dict[str, pd.DataFrame]:
    """ROC and precision-recall per class (one file each: `dvc plots` draws them across versions) and the
    reliability points, under ``folder``; returns them with the reliability table."""
    from coronet.evaluation.plots import curve_tables

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
                  ece: float, history: Path, per_class: int, folder: Path) -> list[str]:
    """The PNG figures; returns warnings (Grad-CAM maps that came out empty)."""
    from coronet.evaluation.gradcam import gradcam_panel
    from coronet.evaluation.metrics import confusion
    from coronet.evaluation.plots import confusion_matrix_figure, reliability_figure, roc_figure, training_curves

    classes = classifier.classes
    training_curves(pd.read_csv(history), folder / "training_curves.png")
    confusion_matrix_figure(confusion(predictions, classes), classes, folder / "confusion_matrix.png",
                            "CoroNet test confusion matrix")
    roc_figure(curves, classes, folder / "roc.png")
    reliability_figure(curves["reliability"], folder / "reliability.png", ece)
    empty = gradcam_panel(classifier, test, predictions, per_class, folder / "gradcam_panel.png")
    return [f"{empty} of the Grad-CAM panel's maps are empty (no evidence for the class anywhere in the last "
            "convolutional layer): those images' answers come from what the map cannot show"] if empty else []


def stress_tests(classifier: Any, test: pd.DataFrame, cfg: StressParams, seed: int, batch: int, level: float,
                 path: Path, figure: Path, screening: str | None) -> StressRecord:
    """Nuisance transforms of the test images through the loaded model: does the answer follow the frame?
    Does it survive without the lungs?"""
    from coronet.evaluation.plots import stress_figure

    started = time.monotonic()
    results = stress.run(classifier, stress.decode_files(list(test["path"])), list(test["label"]), cfg.transforms,
                         seed, batch, level)
    results.update(warn_flip_rate=cfg.warn_flip_rate, screening_class=screening,
                   lungs=stress.lung_verdicts(results), warnings=stress.warnings(results, cfg.warn_flip_rate))
    record = StressRecord.from_json(results)
    record.write(path)
    stress_figure(record, classifier.classes, figure)
    print(f"stress tests: {sum(map(len, cfg.transforms.values()))} transformed copies of {len(test)} test images in "
          f"{time.monotonic() - started:.1f} s")
    return record


def shortcut_warnings(evidence: EvidenceRecord, stressed: StressRecord, more: list[str]) -> list[str]:
    """What a reader of the numbers must not miss: a predictable source, controls called COVID, predictions
    that follow a frame or survive without the lungs."""
    found = [f"the image source is predictable from {name.replace('_', ' ')} (AUC {probe['auc']:.3f}): the data "
             "permit a shortcut" for name, probe in evidence.confound_probe.items()
             if isinstance(probe, dict) and probe.get("auc", 0) >= PROBE_WARNING_AUC]
    controls = evidence.controls
    if "called_screening" in controls:
        c, o = controls["called_screening"], controls["other_source_called_screening"]
        if clearly_above(c, o):
            found.append(f"{c['rate']:.0%} of the same-source controls (no {controls['screening_class']}) are called "
                         f"{controls['screening_class']}, against {o['rate']:.0%} of the other source's test images: "
                         "the model reads the source")
    found += external_warnings(evidence.external)
    found += scored_warnings(evidence.scored)
    return [f"warning: {text}; see metrics/model_card.md" for text in [*found, *stressed.warnings, *more]]
