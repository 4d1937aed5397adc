"""The MLflow pyfunc: images as they arrive over HTTP (base64 PNG/JPEG/DICOM bytes) -> probabilities.

Its answer per row is :func:`coronet.serving.predict.answer`'s, as JSON: ``p_<class>`` (null for a row
that failed), ``predicted``, the grouped view, ``low_confidence``, ``checks`` and ``error``.
"""

from __future__ import annotations

import ast
import base64
import binascii
import functools
import hashlib
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
ENTRY = Path(__file__).with_name("entry.py")
ENTRY_MODULE = "coronet.serving.entry"


class CoronetImageModel(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with an ``image`` column of base64 file bytes. Output: one probability column
    per class (fixed class order), the grouped view, the input checks and ``error`` for rows that failed.

    A null, empty or non-base64 row gets its own error; the others are classified, in batches of the
    model config's ``batch_size``. A request over ``max_rows`` rows is refused as a whole (HTTP 400).
    """

    def load_context(self, context: Any) -> None:
        from coronet.model.classifier import Classifier

        self.classifier = Classifier.load(context.artifacts["keras_model"], context.artifacts["meta"])
        config = getattr(context, "model_config", None) or {}
        self.max_rows, self.batch_size = int(config["serving.max_rows"]), int(config["serving.batch_size"])
        self.low_confidence = float(config["serving.low_confidence"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from coronet.serving.predict import answer, answer_columns, classify

        if IMAGE_COLUMN not in model_input.columns:
            raise MlflowException(f"the request needs an {IMAGE_COLUMN!r} column of base64 image bytes",
                                  error_code=INVALID_PARAMETER_VALUE)
        if len(model_input) > self.max_rows:
            raise MlflowException(f"{len(model_input)} rows in one request; at most {self.max_rows} are accepted "
                                  "(serving.max_rows): send several requests", error_code=INVALID_PARAMETER_VALUE)
        loaders = [functools.partial(decode_base64, value) for value in model_input[IMAGE_COLUMN]]
        rows = [answer(self.classifier, item, self.low_confidence)
                for item in classify(self.classifier, loaders, self.batch_size)]
        # object columns keep None as None: the JSON answer says null where NaN would not be JSON at all
        return pd.DataFrame(rows, columns=answer_columns(self.classifier.classes, self.classifier.groups), dtype=object)


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


def signature(classes: list[str], groups: dict[str, list[str]]) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from coronet.serving.predict import answer_columns

    kinds = {"predicted": "string", "predicted_group": "string", "low_confidence": "boolean", "checks": "string",
             "error": "string", "training_data": "string"}
    outputs = [ColSpec(kinds.get(name, "double"), name) for name in answer_columns(classes, groups)]
    return ModelSignature(inputs=Schema([ColSpec("string", IMAGE_COLUMN)]), outputs=Schema(outputs))


def served_modules(root: str = ENTRY_MODULE) -> tuple[set[str], list[Path]]:
    """What the served code is: the top-level names of the third-party packages it can import, and the
    source files of every coronet module reachable from ``root`` (imports inside functions included, so a
    lazy import is not missed the way watching ``sys.modules`` would miss it)."""
    seen, todo, found, files = set(), [root], set(), []
    while todo:
        name = todo.pop()
        try:
            spec = util.find_spec(name)
        except ModuleNotFoundError:  # ``from coronet.x import name``: a name in a module, not a submodule
            spec = None
        if name in seen or spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        seen.add(name)
        files.append(Path(spec.origin))
        for node in ast.walk(ast.parse(Path(spec.origin).read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names += [f"{node.module}.{a.name}" for a in node.names]  # submodules imported by name
            for imported in names:
                if imported.split(".")[0] == "coronet":
                    todo.append(imported)
                elif imported.split(".")[0] not in sys.stdlib_module_names:
                    found.add(imported.split(".")[0])
    return found, sorted(set(files))


def pinned_requirements() -> list[str]:
    """``name==version`` of the installed distribution behind each package the served code imports."""
    providers = metadata.packages_distributions()
    names = {dist for package in served_modules()[0] for dist in providers.get(package, [])}
    return sorted(f"{name}=={metadata.version(name)}" for name in names)


def model_config(serving: dict[str, Any]) -> dict[str, Any]:
    """params serving as the logged model's config. Prefixed, as in params.yaml: MLflow also logs the config
    as run params, where a bare ``batch_size`` would sit beside ``train.batch_size`` and mean another thing."""
    return {f"serving.{key}": value for key, value in serving.items()}


def served_digest(artifacts: dict[str, Path], config: dict[str, Any]) -> str:
    """sha256 of everything the served model's answers depend on: its artifacts (the Keras file, run.json
    with the classes and preprocessing, the stress results its checks quote), its serving config and the
    source of every coronet module it runs. The package stage logs a new model when this changes."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name, path in sorted(artifacts.items()):
        digest.update(name.encode() + b"\0" + Path(path).read_bytes())
    for path in served_modules()[1]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def input_example() -> pd.DataFrame:
    """A request as the server takes it: one synthetic chest phantom (no patient's image is copied into
    the logged model) as base64 PNG."""
    from PIL import Image

    from coronet.data.phantom import draw_xray

    buffer = io.BytesIO()
    Image.fromarray(draw_xray(np.random.default_rng(0), "", 224)).save(buffer, format="PNG")  # no finding drawn
    return pd.DataFrame({IMAGE_COLUMN: [base64.b64encode(buffer.getvalue()).decode()]})


def log_pyfunc(artifacts: dict[str, Path], config: dict[str, Any], tags: dict[str, str]) -> Any:
    """Logs the model to the active MLflow run, from code (:data:`ENTRY`), with its preprocessing code, a
    signature, an input example, the pinned requirements of what it imports and the serving config."""
    import coronet
    from coronet.records import RunRecord

    record = RunRecord.read(artifacts["meta"])
    contract = record.model
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(ENTRY),
        artifacts={name: str(path) for name, path in artifacts.items()},
        code_paths=[str(Path(coronet.__file__).parent)],
        signature=signature(contract.classes, contract.groups),
        input_example=input_example(),
        pip_requirements=pinned_requirements(),
        model_config=config,
        metadata={"trained_on": record.trained_on.statement(), **record.trained_on.tags()},
        tags=tags,
    )
