"""The MLflow pyfunc: images as they arrive over HTTP (base64 PNG/JPEG/DICOM bytes) -> probabilities."""

from __future__ import annotations

import base64
import binascii
import functools
import json
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

IMAGE_COLUMN = "image"
DEFAULT_CONFIG = {"max_rows": 256, "batch_size": 32}  # params.yaml serving overrides both
REQUIREMENTS = ("tensorflow-cpu", "keras", "mlflow", "numpy", "pandas", "pillow", "pydicom", "tqdm")


class CoronetImageModel(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with an ``image`` column of base64 file bytes. Output: one probability
    column per class (fixed class order), ``predicted``, and ``error`` for rows that failed.

    A null, empty or non-base64 row gets its own error; the others are classified, in batches of the
    model config's ``batch_size``. A request over ``max_rows`` rows is refused as a whole (HTTP 400).
    """

    def load_context(self, context: Any) -> None:
        from coronet.predict import Classifier

        self.classifier = Classifier.load(context.artifacts["keras_model"], context.artifacts["meta"])
        config = {**DEFAULT_CONFIG, **(getattr(context, "model_config", None) or {})}
        self.max_rows, self.batch_size = int(config["max_rows"]), int(config["batch_size"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from coronet.predict import classify

        if IMAGE_COLUMN not in model_input.columns:
            raise MlflowException(f"the request needs an {IMAGE_COLUMN!r} column of base64 image bytes",
                                  error_code=INVALID_PARAMETER_VALUE)
        if len(model_input) > self.max_rows:
            raise MlflowException(f"{len(model_input)} rows in one request; at most {self.max_rows} are accepted "
                                  "(serving.max_rows): send several requests", error_code=INVALID_PARAMETER_VALUE)
        classes = self.classifier.classes
        loaders = [functools.partial(decode_base64, value) for value in model_input[IMAGE_COLUMN]]
        rows: list[dict[str, Any]] = []
        for _, p, error in classify(self.classifier, loaders, self.batch_size):
            row: dict[str, Any] = {f"p_{c}": np.nan for c in classes} | {"predicted": "", "error": error}
            if p is not None:
                row.update({f"p_{c}": float(v) for c, v in zip(classes, p, strict=True)})
                row["predicted"] = classes[int(np.argmax(p))]
            rows.append(row)
        return pd.DataFrame(rows, columns=[f"p_{c}" for c in classes] + ["predicted", "error"])


def decode_base64(value: Any) -> bytes:
    """One request row -> file bytes; ValueError with the reason for null, empty or non-base64 rows."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        raise ValueError("no image in this row (null)")
    if not isinstance(value, str | bytes) or not value:
        raise ValueError("no image in this row (empty)" if not value else "the image must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"the image is not valid base64 ({exc})") from None


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


def log_pyfunc(model_path: Path, meta_path: Path, config: dict[str, int] | None = None) -> Any:
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
        model_config={**DEFAULT_CONFIG, **(config or {})},
    )
