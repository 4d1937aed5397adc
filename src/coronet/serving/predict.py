"""Classifying new images: through the same decoder, input checks and model input as training, in batches.

``coronet predict``, the served MLflow model and the page all go through :func:`classify` and
:func:`answer`, so a file, a base64 row and an upload get the same probabilities, the same grouped
view, the same input checks and the same errors.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coronet.console import progress
from coronet.imaging import checks
from coronet.imaging.decode import decode_grayscale, max_pixels
from coronet.model.classifier import Classifier


@dataclass
class Prediction:
    """One input's answer: its probabilities (None when it could not be classified, with ``error``), the
    decoded image and the model input made from it, and the input checks' findings."""

    probabilities: np.ndarray | None = None
    error: str = ""
    gray: np.ndarray | None = None
    model_input: np.ndarray | None = None
    findings: list[checks.Finding] = field(default_factory=list)


def read_file(path: Path) -> bytes:
    """A file's bytes; a named pipe, device or socket is refused (reading one would wait for a writer forever)."""
    if path.exists() and not path.is_file() and not path.is_dir():
        raise ValueError("not a regular file (a named pipe, device or socket): nothing to classify")
    return path.read_bytes()


def prepare(classifier: Classifier, load: Callable[[], bytes]) -> Prediction:
    """Decoded, checked and made into a model input; or the reason this input cannot be classified.

    Any failure while reading or decoding one input (odd DICOM tags, unexpected Pillow errors, memory)
    is that input's error: the other inputs of a batch are still classified.
    """
    try:
        gray = decode_grayscale(load())
        findings = checks.inspect(gray, classifier.resize_size)
        if refused := checks.refusal(findings):
            return Prediction(error=refused, findings=findings)
        return Prediction(gray=gray, model_input=classifier.prepare_gray(gray), findings=findings)
    except FileNotFoundError:
        return Prediction(error="no such file")
    except IsADirectoryError:
        return Prediction(error="is a directory")
    except PermissionError:
        return Prediction(error="permission denied")
    except ValueError as exc:  # ImageDecodeError, or a serving row that holds no image
        return Prediction(error=str(exc))
    except MemoryError:
        return Prediction(error="not enough memory to decode this image")
    except Exception as exc:  # one bad input never spoils the others
        return Prediction(error=f"cannot read this input ({type(exc).__name__}: {exc})")


# What one decode may hold at once: a 60-million-pixel image as 16-bit pixels, a float copy and the 8-bit result.
DECODE_BYTES = max_pixels() * (2 + 8 + 1)


def decode_workers() -> int:
    """Threads decoding ahead of the model: one per core, but no more than the memory available now can hold
    (each may be decoding the largest image the limit admits)."""
    import psutil

    return max(1, min(os.cpu_count() or 1, psutil.virtual_memory().available // DECODE_BYTES))


def classify(classifier: Classifier, loaders: list[Callable[[], bytes]], batch_size: int, show_progress: bool = False
             ) -> Iterator[Prediction]:
    """One :class:`Prediction` per input, in order, predicted in batches.

    Decoding runs in threads (Pillow releases the GIL) one batch ahead of the model, so at most two
    batches of inputs are held however many there are.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    chunks = [loaders[i : i + batch_size] for i in range(0, len(loaders), batch_size)]
    # A bar from the first image where a person watches (console.progress): the first model call alone takes
    # tens of seconds on a CPU (graph tracing), and a silent terminal looks hung.
    bar = progress(total=len(loaders), desc="predict", unit="img") if show_progress else None
    with ThreadPoolExecutor(max_workers=decode_workers()) as pool:
        ahead = [pool.submit(prepare, classifier, load) for load in chunks[0]] if chunks else []
        for k in range(len(chunks)):
            prepared = [future.result() for future in ahead]
            ahead = [pool.submit(prepare, classifier, load) for load in chunks[k + 1]] if k + 1 < len(chunks) \
                else []
            good = [p.model_input for p in prepared if p.model_input is not None]
            probs = iter(classifier.probabilities(np.stack(good)) if good else [])
            for item in prepared:
                if item.model_input is not None:
                    item.probabilities = next(probs)
                yield item
            if bar is not None:
                bar.update(len(prepared))
    if bar is not None:
        bar.close()


def grouped(probabilities: np.ndarray, classes: list[str], groups: dict[str, list[str]]) -> dict[str, float]:
    """The grouped view (params class_groups; the paper's 3 classes): each group's members summed."""
    by_class = dict(zip(classes, map(float, probabilities), strict=True))
    return {group: sum(by_class[m] for m in members) for group, members in groups.items()}


def answer_columns(classes: list[str], groups: dict[str, list[str]]) -> list[str]:
    """The columns of :func:`answer`, in order: the one definition the CLI, the JSON, the served model and
    the page share."""
    grouped = ["predicted_group", *(f"pg_{g}" for g in groups)] if groups else []
    return [*(f"p_{c}" for c in classes), "predicted", *grouped, "low_confidence", "checks", "error", "training_data"]


def answer(classifier: Classifier, item: Prediction, low_confidence: float) -> dict[str, Any]:
    """The answer every door gives: ``p_<class>`` (None when not classified), ``predicted``, the grouped
    view (``predicted_group``, ``pg_<group>``), ``low_confidence`` (top probability under the threshold),
    ``checks`` (the input checks' warnings, "; " between them), ``error`` and ``training_data``."""
    classes = classifier.classes
    row: dict[str, Any] = {f"p_{c}": None for c in classes}
    row["predicted"] = ""
    if classifier.groups:
        row.update({"predicted_group": "", **{f"pg_{g}": None for g in classifier.groups}})
    p = item.probabilities
    if p is not None:
        row.update({f"p_{c}": round(float(v), 6) for c, v in zip(classes, p, strict=True)})
        row["predicted"] = classes[int(np.argmax(p))]
        if classifier.groups:
            merged = grouped(p, classes, classifier.groups)
            row.update({f"pg_{name}": round(v, 6) for name, v in merged.items()})
            row["predicted_group"] = max(merged, key=merged.get)
    row["low_confidence"] = bool(p is not None and float(np.max(p)) < low_confidence)
    row["checks"] = "; ".join(f.message for f in item.findings if f.severity == "warn")
    row["error"] = item.error
    row["training_data"] = training_data(classifier)
    return row


def training_data(classifier: Classifier) -> str:
    """``synthetic`` for a demo model, ``real`` otherwise: each answer carries it, so no copy of the answer
    passes a synthetic model's guess off as a real model's."""
    trained_on = classifier.trained_on
    return "unknown" if trained_on is None else "synthetic" if trained_on.synthetic else "real"


def shown_path(path: Path) -> str:
    """A path as given, or relative to the working directory when it lies below it."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def predict_files(classifier: Classifier, files: list[Path], batch_size: int, low_confidence: float = 0.0,
                  gradcam_dir: Path | None = None, gradcam_class: str | None = None) -> tuple[list[dict[str, Any]],
                                                                                              list[str]]:
    """One result row per file, in order (a file that fails gets its reason in ``error``), and the Grad-CAM
    overlays that could not be written (the rows are complete either way)."""
    names = gradcam_names(files)
    rows: list[dict[str, Any]] = []
    failed_overlays: list[str] = []
    loaders = [functools.partial(read_file, path) for path in files]
    for path, item in zip(files, classify(classifier, loaders, batch_size, show_progress=True), strict=True):
        row = {"file": shown_path(path), **answer(classifier, item, low_confidence),
               "check_names": ",".join(f.check for f in item.findings if f.severity == "warn")}  # the table's
        if gradcam_dir is not None and item.probabilities is not None:
            target = gradcam_dir / names[path]
            try:
                empty = write_gradcam(classifier, item, target, gradcam_class)
                row["gradcam"] = shown_path(target) + (" (empty map)" if empty else "")
            except OSError as exc:
                row["gradcam"] = ""
                failed_overlays.append(f"{target}: {exc.strerror or exc}")
        rows.append(row)
    return rows, failed_overlays


def gradcam_names(files: list[Path]) -> dict[Path, str]:
    """``<stem>_gradcam.png`` per input; inputs sharing a stem (``a/scan.png``, ``b/scan.png``, ``scan.dcm``)
    get a short digest of their full path too, so no overlay overwrites another."""
    stems = Counter(path.stem for path in set(files))
    return {path: f"{path.stem}_gradcam.png" if stems[path.stem] == 1 else
            f"{path.stem}-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]}_gradcam.png"
            for path in files}


def gradcam_overlay(classifier: Classifier, item: Prediction, class_name: str | None = None
                    ) -> tuple[np.ndarray, bool]:
    """The Grad-CAM overlay (RGB, at the image's own resolution, captioned with the class and its
    probability) of ``class_name`` or the predicted class, and whether its map was empty."""
    from coronet.evaluation.gradcam import caption, gradcam, is_empty, overlay

    index = classifier.classes.index(class_name) if class_name else None
    heatmap, used = gradcam(classifier.model, item.model_input, classifier.gradcam_layer, index)
    empty = is_empty(heatmap)
    text = caption(classifier.classes[used], float(item.probabilities[used]), empty)
    if classifier.trained_on is not None:  # everything a model draws says what it learned from
        text += f"\n{classifier.trained_on.label()}"
    return overlay(item.gray, heatmap, caption=text), empty


def write_gradcam(classifier: Classifier, item: Prediction, target: Path, class_name: str | None) -> bool:
    """Writes the overlay as a PNG (atomically); returns whether its map was empty."""
    from PIL import Image

    from coronet.evaluation.plots import provenance
    from coronet.files import atomic_path

    picture, empty = gradcam_overlay(classifier, item, class_name)
    with atomic_path(target, suffix=".png") as tmp:
        Image.fromarray(picture).save(tmp, format="PNG", pnginfo=provenance(classifier.trained_on))
    return empty
