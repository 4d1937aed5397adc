"""The JSON records stages hand each other, one dataclass each with a schema version:
``models/run.json`` (train), ``metrics/data.json`` (split) and ``models/package.json`` (package).

Each is written by one stage through ``write`` and read through ``read``, so its fields are named in
one place. Reading a file of another kind, or of an older schema, is one ``error:`` line that names
the file and says how to renew it, never a KeyError deep in a later stage.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from coronet.errors import UserError
from coronet.files import write_json

R = TypeVar("R", bound="Record")


class RecordError(UserError):
    """A record file that is missing, unreadable, foreign or from an older schema."""


@dataclass
class Record:
    KIND: ClassVar[str] = ""
    SCHEMA: ClassVar[int] = 1
    WRITER: ClassVar[str] = ""  # the stage that writes it, for the error message

    def to_json(self) -> dict[str, Any]:
        return {"schema": f"{self.KIND}/{self.SCHEMA}", **dataclasses.asdict(self)}

    def write(self, path: Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def from_json(cls: type[R], data: dict[str, Any]) -> R:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def read(cls: type[R], path: Path) -> R:
        renew = f"rerun the {cls.WRITER} stage (dvc repro) to write it anew"
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RecordError(f"{path} is missing: {renew}") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise RecordError(f"{path} cannot be read ({exc}): {renew}") from None
        schema = data.get("schema") if isinstance(data, dict) else None
        if schema != f"{cls.KIND}/{cls.SCHEMA}":
            kind = str(schema).split("/")[0] if schema else None
            what = ("written by an older version of the pipeline" if kind in (None, cls.KIND)
                    else f"a {kind} record, not a {cls.KIND} record")
            raise RecordError(f"{path} is {what} (schema {schema!r}, expected {cls.KIND}/{cls.SCHEMA}): {renew}")
        try:
            return cls.from_json(data)
        except (TypeError, ValueError, KeyError) as exc:
            raise RecordError(f"{path} does not hold what a {cls.KIND} record holds ({exc}): {renew}") from None


@dataclass
class ModelContract:
    """What a saved model needs from its caller: its class order (and the views derived from it) and
    the preprocessing it was trained with."""

    classes: list[str]
    groups: dict[str, list[str]]
    screening: str | None
    image_size: int
    weights: str | None
    resize_size: int
    resize_mode: str


@dataclass
class RunRecord(Record):
    """``models/run.json``: the train stage's run, beside the model it wrote."""

    KIND: ClassVar[str] = "coronet.run"
    WRITER: ClassVar[str] = "train"
    run_id: str | None
    experiment: str
    tracking_uri: str
    tracking_errors: list[str]
    train: dict[str, Any]  # the train params the model was fitted with
    seed: int
    precision: str
    throughput: dict[str, float] | None
    model: ModelContract

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        record = super().from_json(data)
        record.model = ModelContract(**record.model)
        return record


@dataclass
class DataRecord(Record):
    """``metrics/data.json``: what one data version holds (the split stage's summary)."""

    KIND: ClassVar[str] = "coronet.data"
    WRITER: ClassVar[str] = "split"
    images: dict[str, dict[str, int]]  # split -> class -> images, plus total and patients
    total: int
    sources: dict[str, int]
    rejected: dict[str, int]
    near_duplicates: dict[str, int]
    leakage: dict[str, int]
    split_settings: dict[str, Any]  # not "split", which would clash with the params section in `dvc exp show`
    archives: dict[str, dict[str, str]]  # source -> file, url, sha256 of the download it came from
    download_source: str
    controls: dict[str, Any] = field(default_factory=dict)  # same-source controls: role, images per finding


@dataclass
class PackageRecord(Record):
    """``models/package.json``: what the package stage logged and registered."""

    KIND: ClassVar[str] = "coronet.package"
    WRITER: ClassVar[str] = "package"
    run_id: str | None
    model_uri: str | None
    registered_model: str | None
    version: str | None
    served_digest: str
    tracking_uri: str
    errors: list[str]
