"""The one params loader: reads ``params.yaml``; each stage takes its own sections from it.

Sections come back as :class:`Section` mappings: a missing key or a value of the wrong kind is a
:class:`~coronet.errors.ParamsError` naming the dotted key, never a KeyError or a bare ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from coronet.errors import ParamsError

PARAMS_FILE = "params.yaml"


class Section(dict):
    """A params.yaml mapping that knows its dotted path, with typed, checked accessors."""

    def __init__(self, data: dict[str, Any], path: str = "") -> None:
        super().__init__({k: Section(v, f"{path}{k}.") if isinstance(v, dict) else v for k, v in data.items()})
        self.path = path

    def __missing__(self, key: str) -> Any:
        raise ParamsError(f"params.yaml has no {self.path}{key}; add it as in the repository's params.yaml")

    def _bad(self, key: str, wanted: str) -> ParamsError:
        return ParamsError(f"params.yaml: {self.path}{key} must be {wanted}, got {self[key]!r}")

    def integer(self, key: str, low: int | None = None) -> int:
        value = self[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or (
                low is not None and value < low):
            raise self._bad(key, "an integer" + (f" >= {low}" if low is not None else ""))
        return int(value)

    def number(self, key: str, low: float | None = None, high: float | None = None, *, inclusive: bool = True
               ) -> float:
        """A finite number in [low, high] (or (low, high) when not ``inclusive``)."""
        value = self[key]
        ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
        if ok and low is not None:
            ok = value >= low if inclusive else value > low
        if ok and high is not None:
            ok = value <= high if inclusive else value < high
        if not ok:
            bounds = "" if low is None and high is None else (
                f" in {'[' if inclusive else '('}{low}, {high}{']' if inclusive else ')'}")
            raise self._bad(key, "a number" + bounds)
        return float(value)

    def choice(self, key: str, options: Iterable[str]) -> str:
        options = list(options)
        if self[key] not in options:
            raise self._bad(key, "one of " + ", ".join(repr(o) for o in options))
        return str(self[key])

    def flag(self, key: str) -> bool:
        if not isinstance(self[key], bool):
            raise self._bad(key, "true or false")
        return bool(self[key])

    def text(self, key: str) -> str:
        value = self[key]
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self._bad(key, "a string")
        return value


def load_params(path: str | Path = PARAMS_FILE) -> Section:
    """params.yaml of the working directory (DVC starts every stage in the repository root)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path.resolve()} not found: run the stages from the repository root")
    try:
        with path.open(encoding="utf-8") as f:
            params = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(params, dict):
        raise ParamsError(f"{path} must hold a mapping of sections")
    return Section(params)


def class_names(params: dict[str, Any]) -> list[str]:
    """The fixed class order. Everything that indexes classes goes through this list."""
    classes = params.get("classes")
    if not isinstance(classes, list) or not classes or len(set(map(str, classes))) != len(classes) or not all(
            isinstance(c, str) and c for c in classes):
        raise ParamsError(f"params.yaml: classes must be a non-empty list of unique names, got {classes!r}")
    return list(classes)


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
