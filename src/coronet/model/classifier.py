"""A trained CoroNet with the preprocessing contract it was trained with: what evaluation, prediction,
the served model and the page all load."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coronet.imaging.decode import decode_grayscale, fit_square
from coronet.model.dataset import model_input
from coronet.records import ModelMismatchError, RunRecord, TrainingData

MODEL_META = "run.json"  # written by the train stage beside the model


@dataclass
class Classifier:
    model: Any
    classes: list[str]
    image_size: int
    resize_size: int
    resize_mode: str
    groups: dict[str, list[str]] = field(default_factory=dict)  # params class_groups at training time
    screening: str | None = None  # params screening_class at training time
    trained_on: TrainingData | None = None  # what it learned from: every place that speaks for it says so
    backbone: str = "xception"  # params train.backbone at training time

    @property
    def gradcam_layer(self) -> str:
        """Its backbone's last convolutional activation, where Grad-CAM looks."""
        from coronet.model.network import backbone

        return backbone(self.backbone).last_conv

    @classmethod
    def load(cls, model_path: str | Path, meta_path: str | Path | None = None) -> Classifier:
        from coronet.model.network import load_model

        model_path = Path(model_path)
        meta_path = Path(meta_path) if meta_path else model_path.with_name(MODEL_META)
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} (written by the train stage beside the model) is missing")
        record = RunRecord.read(meta_path)
        record.check_model(model_path, meta_path)
        contract = record.model
        model = load_model(model_path)
        shape = (tuple(model.input_shape[1:3]), model.output_shape[-1])
        if shape != ((contract.image_size, contract.image_size), contract.outputs):
            raise ModelMismatchError(f"{model_path} and {meta_path} do not belong together: the model takes "
                                     f"{shape[0]} px and gives {shape[1]} outputs, the record says "
                                     f"{contract.image_size} px and {contract.outputs}: rerun the train stage")
        return cls(model, list(contract.classes), contract.image_size, contract.resize_size,
                   contract.resize_mode, dict(contract.groups), contract.screening, record.trained_on,
                   contract.backbone)

    def prepare_gray(self, gray: np.ndarray) -> np.ndarray:
        """A decoded grayscale image -> the model's input: the resize stage's steps, then the training
        input function."""
        return np.asarray(model_input(fit_square(gray, self.resize_size, self.resize_mode), self.image_size))

    def prepare(self, data: bytes) -> np.ndarray:
        """File bytes -> the model's input, through the one decoder."""
        return self.prepare_gray(decode_grayscale(data))

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (inference mode) for a batch of model inputs."""
        return np.asarray(self.model.predict_on_batch(batch), dtype=np.float64)

    def predict_gray(self, images: list[np.ndarray], batch_size: int) -> np.ndarray:
        """Class probabilities of processed grayscale images (already at the resize stage's size), in batches."""
        out = [self.probabilities(np.asarray(model_input(np.stack(images[i : i + batch_size]), self.image_size)))
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)))
