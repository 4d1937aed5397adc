"""Classifying new images with a trained model, through the same preprocessing as training."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coronet.images import decode_grayscale, fit_square, model_input
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
