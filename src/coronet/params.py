"""The one params loader: reads ``params.yaml``; each stage takes its own sections from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = "params.yaml"


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """params.yaml of the working directory (DVC starts every stage in the repository root)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path.resolve()} not found: run the stages from the repository root")
    with path.open(encoding="utf-8") as f:
        params = yaml.safe_load(f) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path} must hold a mapping of sections")
    return params


def class_names(params: dict[str, Any]) -> list[str]:
    """The fixed class order. Everything that indexes classes goes through this list."""
    classes = list(params.get("classes") or [])
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"params.yaml classes must be a non-empty list of unique names, got {classes}")
    return classes


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'augment': {'zoom': 0.1}}} -> {'train.augment.zoom': 0.1} (MLflow params, DVC keys)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
