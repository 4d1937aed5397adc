"""The MLflow pyfunc: images as they arrive over HTTP (base64 PNG/JPEG/DICOM bytes) -> probabilities."""

from __future__ import annotations

import ast
import base64
import binascii
import functools
import io
import json
import sys
from importlib import metadata, util
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

IMAGE_COLUMN = "image"
DEFAULT_CONFIG = {"max_rows": 256, "batch_size": 32}  # params.yaml serving overrides both
ENTRY = Path(__file__).with_name("pyfunc_entry.py")


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


def imported_packages(root: str = "coronet.pyfunc_entry") -> set[str]:
    """Top-level names of the third-party packages the served code can import: read from the source of
    every coronet module reachable from ``root`` (imports inside functions included), so a lazy import
    is not missed the way watching ``sys.modules`` would miss it."""
    seen, todo, found = set(), [root], set()
    while todo:
        name = todo.pop()
        spec = util.find_spec(name)
        if name in seen or spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        seen.add(name)
        for node in ast.walk(ast.parse(Path(spec.origin).read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for imported in names:
                if imported.split(".")[0] == "coronet":
                    todo.append(imported)
                elif imported.split(".")[0] not in sys.stdlib_module_names:
                    found.add(imported.split(".")[0])
    return found


def pinned_requirements() -> list[str]:
    """``name==version`` of the installed distribution behind each package the served code imports."""
    providers = metadata.packages_distributions()
    names = {dist for package in imported_packages() for dist in providers.get(package, [])}
    return sorted(f"{name}=={metadata.version(name)}" for name in names)


def input_example() -> pd.DataFrame:
    """A request as the server takes it: one synthetic chest phantom (no patient's image is copied into
    the logged model) as base64 PNG."""
    import numpy as np
    from PIL import Image

    from coronet.synthetic import draw_xray

    buffer = io.BytesIO()
    Image.fromarray(draw_xray(np.random.default_rng(0), "", 224)).save(buffer, format="PNG")  # no finding drawn
    return pd.DataFrame({IMAGE_COLUMN: [base64.b64encode(buffer.getvalue()).decode()]})


def log_pyfunc(model_path: Path, meta_path: Path, config: dict[str, int], tags: dict[str, str]) -> Any:
    """Logs the model to the active MLflow run, from code (:data:`ENTRY`), with its preprocessing code, a
    signature, an input example, the pinned requirements of what it imports and the serving config."""
    import coronet

    classes = json.loads(meta_path.read_text())["model"]["classes"]
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(ENTRY),
        artifacts={"keras_model": str(model_path), "meta": str(meta_path)},
        code_paths=[str(Path(coronet.__file__).parent)],
        signature=signature(classes),
        input_example=input_example(),
        pip_requirements=pinned_requirements(),
        model_config={**DEFAULT_CONFIG, **config},
        tags=tags,
    )
