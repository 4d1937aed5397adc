"""The one params loader: reads ``params.yaml``; each stage takes its own sections from it.

Sections come back as :class:`Section` mappings: a missing key or a value of the wrong kind is a
:class:`~coronet.errors.ParamsError` naming the dotted key, never a KeyError or a bare ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class ClassScheme:
    """The class list and what is derived from it: the grouped view (the paper's 3 classes) and the
    class screened against the rest. The one place that knows them; everything else takes this."""

    classes: list[str]
    groups: dict[str, list[str]] = field(default_factory=dict)
    screening: str | None = None

    def group_of(self) -> dict[str, str]:
        return {member: group for group, members in self.groups.items() for member in members}


def class_scheme(params: dict[str, Any]) -> ClassScheme:
    """``classes``, ``class_groups`` and ``screening_class`` from params.yaml, checked against each other."""
    classes = class_names(params)
    groups = params.get("class_groups") or {}
    if not isinstance(groups, dict) or not all(isinstance(v, list) and v for v in groups.values()):
        raise ParamsError(f"params.yaml: class_groups must map group names to lists of classes, got {groups!r}")
    members = [str(m) for v in groups.values() for m in v]
    if unknown := sorted(set(members) - set(classes)):
        raise ParamsError(f"params.yaml: class_groups names {unknown}, which are not in classes {classes}")
    if groups and (sorted(members) != sorted(classes)):
        raise ParamsError("params.yaml: class_groups must hold every class exactly once; "
                          f"{sorted(set(classes) - set(members))} missing or some listed twice")
    screening = params.get("screening_class")
    if screening is not None and screening not in classes:
        raise ParamsError(f"params.yaml: screening_class {screening!r} is not in classes {classes}")
    return ClassScheme(classes, {str(g): [str(m) for m in v] for g, v in groups.items()}, screening)


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
