"""The one params loader: reads ``params.yaml`` and hands each stage its own section."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = "params.yaml"


def project_root() -> Path:
    """The repository the pipeline runs in: the working directory, where DVC starts every stage."""
    return Path.cwd()


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    path = Path(path) if path else project_root() / PARAMS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the stages from the repository root")
    with path.open(encoding="utf-8") as f:
        params = yaml.safe_load(f) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path} must hold a mapping of sections")
    return params


def section(name: str, params: dict[str, Any] | None = None) -> Any:
    """One section of params.yaml (``seed`` and ``classes`` are sections too)."""
    params = load_params() if params is None else params
    if name not in params:
        raise KeyError(f"params.yaml has no section {name!r}")
    return params[name]


def class_names(params: dict[str, Any] | None = None) -> list[str]:
    """The fixed class order. Everything that indexes classes goes through this list."""
    classes = list(section("classes", params))
    if len(set(classes)) != len(classes) or not classes:
        raise ValueError(f"params.yaml classes must be unique and non-empty, got {classes}")
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


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in {"1", "true", "yes"}
