"""Classifying new images with a trained model, through the same preprocessing as training, in batches."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from coronet.images import decode_grayscale, fit_square, model_input

MODEL_META = "run.json"  # written by the train stage beside the model


@dataclass
class Classifier:
    """A loaded model plus the preprocessing contract it was trained with."""

    model: Any
    classes: list[str]
    image_size: int
    resize_size: int
    resize_mode: str
    groups: dict[str, list[str]] = field(default_factory=dict)  # params class_groups at training time

    @classmethod
    def load(cls, model_path: str | Path, meta_path: str | Path | None = None) -> Classifier:
        from coronet.model import load_model

        model_path = Path(model_path)
        meta_path = Path(meta_path) if meta_path else model_path.with_name(MODEL_META)
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} (written by the train stage beside the model) is missing")
        meta = json.loads(meta_path.read_text())["model"]
        return cls(load_model(model_path), list(meta["classes"]), int(meta["image_size"]),
                   int(meta["resize"]["size"]), str(meta["resize"]["mode"]), dict(meta.get("groups") or {}))

    def prepare(self, data: bytes) -> np.ndarray:
        """File bytes -> the model's input: the resize stage's steps, then the training input function."""
        gray = fit_square(decode_grayscale(data), self.resize_size, self.resize_mode)
        return np.asarray(model_input(gray, self.image_size))

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (inference mode) for a batch of model inputs."""
        return np.asarray(self.model.predict_on_batch(batch), dtype=np.float64)


def grouped(probabilities: np.ndarray, classes: list[str], groups: dict[str, list[str]]) -> dict[str, float]:
    """The grouped view (params class_groups; the paper's 3 classes): each group's members summed."""
    by_class = dict(zip(classes, map(float, probabilities), strict=True))
    return {group: sum(by_class[m] for m in members) for group, members in groups.items()}


def prepare_input(classifier: Classifier, load: Callable[[], bytes]) -> tuple[np.ndarray | None, str]:
    """(model input, "") or (None, the reason this input cannot be classified).

    Any failure while reading or decoding one input (odd DICOM tags, unexpected Pillow errors, memory)
    is that input's error: the other inputs of a batch are still classified.
    """
    try:
        return classifier.prepare(load()), ""
    except FileNotFoundError:
        return None, "no such file"
    except IsADirectoryError:
        return None, "is a directory"
    except PermissionError:
        return None, "permission denied"
    except ValueError as exc:  # ImageDecodeError, or a serving row that holds no image
        return None, str(exc)
    except MemoryError:
        return None, "not enough memory to decode this image"
    except Exception as exc:  # one bad input never spoils the others
        return None, f"cannot read this input ({type(exc).__name__}: {exc})"


def classify(classifier: Classifier, loaders: list[Callable[[], bytes]], batch_size: int, progress: bool = False
             ) -> Iterator[tuple[np.ndarray | None, np.ndarray | None, str]]:
    """(model input, class probabilities, error) for each input, in order, predicted in batches.

    Decoding runs in threads (Pillow releases the GIL) one batch ahead of the model, so at most two
    batches of inputs are held however many there are.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    chunks = [loaders[i : i + batch_size] for i in range(0, len(loaders), batch_size)]
    bar = tqdm(total=len(loaders), desc="predict", unit="img", disable=not progress)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        ahead = [pool.submit(prepare_input, classifier, load) for load in chunks[0]] if chunks else []
        for k in range(len(chunks)):
            prepared = [future.result() for future in ahead]
            ahead = [pool.submit(prepare_input, classifier, load) for load in chunks[k + 1]] if k + 1 < len(chunks) \
                else []
            good = [array for array, _ in prepared if array is not None]
            probs = iter(classifier.probabilities(np.stack(good)) if good else [])
            for array, error in prepared:
                yield array, (next(probs) if array is not None else None), error
            bar.update(len(prepared))
    bar.close()


def predict_files(classifier: Classifier, files: list[Path], batch_size: int, gradcam_dir: Path | None = None,
                  gradcam_class: str | None = None) -> list[dict[str, Any]]:
    """One result row per file, in order; a file that fails gets its reason in ``error``."""
    classes = classifier.classes
    names = gradcam_names(files)
    rows: list[dict[str, Any]] = []
    loaders = [path.read_bytes for path in files]
    results = classify(classifier, loaders, batch_size, progress=len(files) >= 2 * batch_size)
    for path, (array, p, error) in zip(files, results, strict=True):
        row: dict[str, Any] = {"file": str(path), "predicted": "", "error": error}
        if p is not None:
            row.update({f"p_{c}": round(float(v), 6) for c, v in zip(classes, p, strict=True)})
            row["predicted"] = classes[int(np.argmax(p))]
            if classifier.groups:
                merged = grouped(p, classes, classifier.groups)
                row.update({f"pg_{name}": round(v, 6) for name, v in merged.items()})
                row["predicted_group"] = max(merged, key=merged.get)
            if gradcam_dir is not None:
                write_gradcam(classifier, array, gradcam_dir / names[path], gradcam_class)
        rows.append(row)
    return rows


def gradcam_names(files: list[Path]) -> dict[Path, str]:
    """``<stem>_gradcam.png`` per input; inputs sharing a stem (``a/scan.png``, ``b/scan.png``, ``scan.dcm``)
    get a short digest of their full path too, so no overlay overwrites another."""
    stems = Counter(path.stem for path in set(files))
    return {path: f"{path.stem}_gradcam.png" if stems[path.stem] == 1 else
            f"{path.stem}-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]}_gradcam.png"
            for path in files}


def write_gradcam(classifier: Classifier, array: np.ndarray, target: Path, class_name: str | None) -> Path:
    from PIL import Image

    from coronet.files import atomic_path
    from coronet.gradcam import gradcam, overlay

    index = classifier.classes.index(class_name) if class_name else None
    heatmap, _ = gradcam(classifier.model, array, index)
    picture = overlay(array[..., 0].astype(np.uint8), heatmap)
    with atomic_path(target, suffix=".png") as tmp:
        Image.fromarray(picture).save(tmp, format="PNG")
    return target
