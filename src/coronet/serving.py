"""The MLflow pyfunc: images as they arrive over HTTP (base64 PNG/JPEG/DICOM bytes) -> probabilities."""

from __future__ import annotations

import base64
import binascii
import json
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

IMAGE_COLUMN = "image"
REQUIREMENTS = ("tensorflow-cpu", "keras", "mlflow", "numpy", "pandas", "pillow", "pydicom")


class CoronetImageModel(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with an ``image`` column of base64 file bytes. Output: one probability
    column per class (fixed class order), ``predicted``, and ``error`` for inputs that failed."""

    def load_context(self, context: Any) -> None:
        from coronet.predict import Classifier

        self.classifier = Classifier.load(context.artifacts["keras_model"], context.artifacts["meta"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from coronet.images import ImageDecodeError

        classes = self.classifier.classes
        rows: list[dict[str, Any]] = []
        batch, slots = [], []
        for i, encoded in enumerate(model_input[IMAGE_COLUMN]):
            row: dict[str, Any] = {f"p_{c}": np.nan for c in classes} | {"predicted": "", "error": ""}
            try:
                batch.append(self.classifier.prepare(base64.b64decode(encoded, validate=True)))
                slots.append(i)
            except (binascii.Error, ValueError, ImageDecodeError) as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
        if batch:
            probs = self.classifier.probabilities(np.stack(batch))
            for i, p in zip(slots, probs, strict=True):
                rows[i].update({f"p_{c}": float(v) for c, v in zip(classes, p, strict=True)})
                rows[i]["predicted"] = classes[int(np.argmax(p))]
        return pd.DataFrame(rows, columns=[f"p_{c}" for c in classes] + ["predicted", "error"])


def signature(classes: list[str]) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    outputs = [ColSpec("double", f"p_{c}") for c in classes]
    outputs += [ColSpec("string", "predicted"), ColSpec("string", "error")]
    return ModelSignature(inputs=Schema([ColSpec("string", IMAGE_COLUMN)]), outputs=Schema(outputs))


def pinned_requirements() -> list[str]:
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def log_pyfunc(model_path: Path, meta_path: Path) -> Any:
    """Logs the model (with its preprocessing code and a signature) to the active MLflow run."""
    import coronet

    classes = json.loads(meta_path.read_text())["model"]["classes"]
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=CoronetImageModel(),
        artifacts={"keras_model": str(model_path), "meta": str(meta_path)},
        code_paths=[str(Path(coronet.__file__).parent)],
        signature=signature(classes),
        pip_requirements=pinned_requirements(),
    )
