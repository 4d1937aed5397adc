"""Shortcut stress tests: how predictions move when the test images change in ways that should not matter.

Each nuisance transform (:data:`coronet.imaging.nuisance.TRANSFORMS`) takes a processed 8-bit grayscale image and
a strength, where strength 0 is the image itself. None adds information about disease: a model whose
predictions flip under them (above all towards COVID-19 under a frame, as COVID-19 images are often framed
figures from papers) has learned where an image came from. The lungs-removed pair (Maguolo & Nanni 2021)
blanks the lung fields, or everything else: a model still far above chance without the lungs reads
something other than the lungs. Transformed images go through the prediction input function, in batches,
through the already loaded model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coronet.evaluation.intervals import wilson
from coronet.imaging import nuisance
from coronet.imaging.decode import decode_grayscale

LUNG_TESTS = ("lungs_removed", "lungs_only")


def compare(baseline: np.ndarray, changed: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """How predictions moved from ``baseline`` to ``changed`` probabilities (rows: images, columns: classes).

    ``flip_to[c]``: of the images not predicted c before, the share predicted c now (for covid: the rate
    at which non-COVID predictions turn COVID). ``flip_from[c]``: of the images predicted c before, the
    share predicted something else now. ``called[c]``: of the images whose true class is not c, the share
    predicted c now.
    """
    before, after = baseline.argmax(axis=1), changed.argmax(axis=1)

    def share(mask: np.ndarray, hit: np.ndarray) -> float | None:
        return float(hit[mask].mean()) if mask.any() else None

    truth = np.array([classes.index(label) for label in labels])
    return {
        "accuracy": float((after == truth).mean()),
        "recall": {c: share(truth == i, after == i) for i, c in enumerate(classes)},
        "flip_rate": float((after != before).mean()),
        "flip_to": {c: share(before != i, after == i) for i, c in enumerate(classes)},
        "flip_from": {c: share(before == i, after != i) for i, c in enumerate(classes)},
        "called": {c: share(truth != i, after == i) for i, c in enumerate(classes)},
        "mean_probability_change": {c: float((changed[:, i] - baseline[:, i]).mean()) for i, c in enumerate(classes)},
    }


def decode_files(paths: list[str]) -> list[np.ndarray]:
    """The processed test images (8-bit grayscale PNGs written by the resize stage), through the one decoder."""
    return [decode_grayscale(Path(path).read_bytes()) for path in paths]


def chance(labels: np.ndarray) -> float:
    """The accuracy of the best constant answer (always the most common test class)."""
    _, counts = np.unique(labels, return_counts=True)
    return float(counts.max() / counts.sum()) if len(counts) else 0.0


def run(classifier: Any, images: list[np.ndarray], labels: list[str], transforms: dict[str, tuple[float, ...]],
        seed: int, batch_size: int, level: float = 0.95) -> dict[str, Any]:
    """Every transform at every strength on the test images: nested dicts for metrics/stress.json.

    The baseline is predicted by the same function as the transformed images, so any change is theirs.
    The lung tests also carry their accuracy's Wilson interval and the chance level it is set against.
    """
    classes = classifier.classes
    labels_array = np.asarray(labels)
    baseline = classifier.predict_gray(images, batch_size)
    results: dict[str, Any] = {"images": len(images), "chance": chance(labels_array),
                               "baseline": compare(baseline, baseline, labels_array, classes), "transforms": {}}
    for name, strengths in transforms.items():
        results["transforms"][name] = {}
        for strength in strengths:
            changed = classifier.predict_gray(nuisance.apply(name, images, float(strength), seed), batch_size)
            stats = compare(baseline, changed, labels_array, classes)
            if name in LUNG_TESTS:
                right = round(stats["accuracy"] * len(images))
                stats["accuracy_interval"] = wilson(right, len(images), level)
            results["transforms"][name][f"{float(strength):g}"] = stats
    return results


def lung_verdicts(results: dict[str, Any]) -> dict[str, Any]:
    """The lungs-removed test in words: per lung test and strength, accuracy against chance, and whether
    the accuracy's interval lies wholly above chance (the model reads something outside what was kept)."""
    out = {}
    for name in LUNG_TESTS:
        for strength, stats in results["transforms"].get(name, {}).items():
            interval = stats.get("accuracy_interval")
            out[f"{name} {strength}"] = {"accuracy": stats["accuracy"], "chance": results["chance"],
                                         "interval": interval,
                                         "above_chance": bool(interval and interval["low"] > results["chance"])}
    return out


def warnings(results: dict[str, Any], threshold: float) -> list[str]:
    """One sentence per transform and strength that flips more than ``threshold`` of the predictions, and
    per strength at which the model stays above chance with the lungs blanked."""
    found = []
    for name, by_strength in results["transforms"].items():
        if name in LUNG_TESTS:
            continue
        for strength, stats in by_strength.items():
            if stats["flip_rate"] > threshold:
                towards = max(stats["flip_to"].items(), key=lambda kv: kv[1] or 0)
                found.append(f"{name} at strength {strength} changes {stats['flip_rate']:.0%} of the test predictions "
                             f"(most often towards {towards[0]}: {towards[1] or 0:.0%} of the others), though it adds "
                             "no information about disease")
    for key, verdict in lung_verdicts(results).items():
        if key.startswith("lungs_removed") and verdict["above_chance"]:
            found.append(f"with the lung fields blanked ({key}) the model is still right on {verdict['accuracy']:.0%} "
                         f"of the test images (chance {verdict['chance']:.0%}; interval "
                         f"{verdict['interval']['low']:.0%}-{verdict['interval']['high']:.0%}): it reads something "
                         "other than the lungs")
    return found
