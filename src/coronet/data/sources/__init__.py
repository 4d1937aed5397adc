"""The source registry: every module here that defines ``SOURCE`` is a source (see :class:`base.Source`).

Download, merge, the synthetic generator, the evidence, ``coronet compare`` and the model card loop over
the sources params ``download.archives`` names; adding one is its module, its params and its synthetic
twin, nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from coronet.data.sources.base import COHORTS, SCORED_ONLY, Candidate, MetadataError, Rejection, Source
from coronet.errors import ParamsError

__all__ = ["COHORTS", "SCORED_ONLY", "Candidate", "MetadataError", "Rejection", "Source", "check_roles", "get",
           "registered"]


def registered() -> dict[str, Source]:
    """name -> source, for every module of this package that defines ``SOURCE``."""
    found: dict[str, Source] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name == "base":
            continue
        source = getattr(importlib.import_module(f"{__name__}.{info.name}"), "SOURCE", None)
        if source is not None:
            found[source.name] = source
    return found


def get(name: str) -> Source:
    """The source ``name`` (a key of params download.archives); a ParamsError naming the known ones."""
    sources = registered()
    if name not in sources:
        raise ParamsError(f"params.yaml: download.archives names source {name!r}, but no module in "
                          f"src/coronet/data/sources defines it; known: {', '.join(sources)}")
    return sources[name]


def check_roles(roles: dict[str, Any], downloaded: list[str]) -> None:
    """params merge.sources against the sources downloaded: a key that names none of them (``actualmd``) would
    drop a source without a word, and ``classes`` for a source that reads its labels elsewhere would be ignored."""
    if unknown := sorted(set(roles) - set(downloaded)):
        raise ParamsError(f"params.yaml: merge.sources names {unknown}, which download.archives does not (it has "
                          f"{', '.join(downloaded)}): a typo? Each key must be a source of download.archives")
    for name, role in roles.items():
        if role.classes and not get(name).maps_findings:
            raise ParamsError(f"params.yaml: merge.sources.{name}.classes is set, but the {name} source does not read "
                              "it (its labels come from its own files): remove it")
