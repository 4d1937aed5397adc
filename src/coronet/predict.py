"""Classifying new images with a trained model, through the same preprocessing as training, in batches."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from coronet.images import ImageDecodeError, decode_grayscale, fit_square, model_input
from coronet.metrics import THREE_CLASS

MODEL_META = "run.json"  # written by the train stage beside the model


@dataclass
class Classifier:
    """A loaded model plus the preprocessing contract it was trained with."""

    model: Any
    classes: list[str]
    image_size: int
    resize_size: int
    resize_mode: str

    @classmethod
    def load(cls, model_path: str | Path, meta_path: str | Path | None = None) -> Classifier:
        from coronet.model import load_model

        model_path = Path(model_path)
        meta_path = Path(meta_path) if meta_path else model_path.with_name(MODEL_META)
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} (written by the train stage beside the model) is missing")
        meta = json.loads(meta_path.read_text())["model"]
        return cls(load_model(model_path), list(meta["classes"]), int(meta["image_size"]),
                   int(meta["resize"]["size"]), str(meta["resize"]["mode"]))

    def prepare(self, data: bytes) -> np.ndarray:
        """File bytes -> the model's input: the resize stage's steps, then the training input function."""
        gray = fit_square(decode_grayscale(data), self.resize_size, self.resize_mode)
        return np.asarray(model_input(gray, self.image_size))

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (inference mode) for a batch of model inputs."""
        return np.asarray(self.model.predict_on_batch(batch), dtype=np.float64)


def three_class(probabilities: np.ndarray, classes: list[str]) -> dict[str, float]:
    """The paper's 3-class view: bacterial and viral probabilities summed as pneumonia."""
    merged: dict[str, float] = {}
    for name, p in zip(classes, probabilities, strict=True):
        key = THREE_CLASS.get(name, name)
        merged[key] = merged.get(key, 0.0) + float(p)
    return merged


def _prepare(classifier: Classifier, path: Path) -> tuple[np.ndarray | None, str]:
    """(model input, "") or (None, the reason this file cannot be classified)."""
    try:
        return classifier.prepare(path.read_bytes()), ""
    except FileNotFoundError:
        return None, "no such file"
    except IsADirectoryError:
        return None, "is a directory"
    except PermissionError:
        return None, "permission denied"
    except ImageDecodeError as exc:
        return None, str(exc)


def predict_files(classifier: Classifier, files: list[Path], batch_size: int, gradcam_dir: Path | None = None,
                  gradcam_class: str | None = None) -> list[dict[str, Any]]:
    """One result row per file, in order; a file that fails gets its reason in ``error``.

    Decoding runs in threads (Pillow releases the GIL) one batch ahead of the model, so at most two
    batches of inputs are held however many files there are.
    """
    classes = classifier.classes
    rows: list[dict[str, Any]] = []
    chunks = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
    bar = tqdm(total=len(files), desc="predict", unit="img", disable=len(files) < 2 * batch_size)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        ahead = [pool.submit(_prepare, classifier, p) for p in chunks[0]] if chunks else []
        for k, chunk in enumerate(chunks):
            prepared = [future.result() for future in ahead]
            ahead = [pool.submit(_prepare, classifier, p) for p in chunks[k + 1]] if k + 1 < len(chunks) else []
            batch_rows = [{"file": str(path), "predicted": "", "error": error}
                          for path, (_, error) in zip(chunk, prepared, strict=True)]
            good = [(row, array) for row, (array, _) in zip(batch_rows, prepared, strict=True) if array is not None]
            if good:
                probs = classifier.probabilities(np.stack([array for _, array in good]))
                for (row, array), p in zip(good, probs, strict=True):
                    row.update({f"p_{c}": round(float(v), 6) for c, v in zip(classes, p, strict=True)})
                    row["predicted"] = classes[int(np.argmax(p))]
                    merged = three_class(p, classes)
                    row.update({f"p3_{name}": round(v, 6) for name, v in merged.items()})
                    row["predicted_3class"] = max(merged, key=merged.get)
                    if gradcam_dir is not None:
                        write_gradcam(classifier, array, Path(row["file"]), gradcam_dir, gradcam_class)
            rows += batch_rows
            bar.update(len(chunk))
    bar.close()
    return rows


def write_gradcam(classifier: Classifier, array: np.ndarray, source: Path, out_dir: Path,
                  class_name: str | None) -> Path:
    from PIL import Image

    from coronet.files import atomic_path
    from coronet.gradcam import gradcam, overlay

    index = classifier.classes.index(class_name) if class_name else None
    heatmap, _ = gradcam(classifier.model, array, index)
    picture = overlay(array[..., 0].astype(np.uint8), heatmap)
    target = out_dir / f"{source.stem}_gradcam.png"
    with atomic_path(target, suffix=".png") as tmp:
        Image.fromarray(picture).save(tmp, format="PNG")
    return target
