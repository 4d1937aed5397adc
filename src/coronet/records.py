"""The JSON records stages hand each other, one dataclass each with a schema version:
``data/raw/sources.json`` (download), ``metrics/data.json`` (split), ``models/run.json`` (train), the
evaluation's ``metrics/metrics.json``, ``metrics/details.json``, ``metrics/evidence.json`` and
``metrics/stress.json`` (evaluate) and ``models/package.json`` (package).

Each is written by one stage through ``write`` and read through ``read``, so its fields are named in
one place. Reading a file of another kind, or of another schema, is one ``error:`` line that names
the file and says how to renew it, never a KeyError deep in a later stage.

``models/run.json`` and ``models/coronet.keras`` are one: the record carries the model file's sha256,
its output count and input size, and every loader checks them (:meth:`RunRecord.check_model`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from coronet.errors import UserError
from coronet.files import sha256_file, write_json

if TYPE_CHECKING:
    from coronet.params import TrainParams

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
        fields = {k: v for k, v in data.items() if k != "schema"}
        if problems := mismatches(cls, fields):
            raise ValueError("; ".join(problems))
        return build(cls, fields)

    @classmethod
    def read(cls: type[R], path: Path) -> R:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RecordError(f"{path} is missing: {cls._renew()}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RecordError(f"{path} cannot be read ({exc}): {cls._renew()}") from None
        return cls.loads(text, str(path))

    @classmethod
    def _renew(cls) -> str:
        return f"rerun the {cls.WRITER} stage (dvc repro) to write it anew"

    @classmethod
    def loads(cls: type[R], text: str | bytes, path: str) -> R:
        """The record in ``text`` (read from ``path``: a file, an MLflow artifact, a file of a commit)."""
        renew = cls._renew()
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RecordError(f"{path} cannot be read ({exc}): {renew}") from None
        if not cls.SCHEMA:
            return cls._checked(data, path, renew)
        schema = data.get("schema") if isinstance(data, dict) else None
        if schema != f"{cls.KIND}/{cls.SCHEMA}":
            kind, _, version = str(schema).partition("/") if schema else (None, "", "")
            if kind not in (None, cls.KIND):
                what = f"a {kind} record, not a {cls.KIND} record"
            elif version.isdigit() and int(version) > cls.SCHEMA:
                what = "written by a newer version of the pipeline than this one"
                renew = f"update this code (git pull), or {renew}"
            else:
                what = "written by an older version of the pipeline"
            raise RecordError(f"{path} is {what} (schema {schema!r}, expected {cls.KIND}/{cls.SCHEMA}): {renew}")
        return cls._checked(data, path, renew)

    @classmethod
    def _checked(cls: type[R], data: Any, path: str, renew: str) -> R:
        try:
            if not isinstance(data, dict):
                raise ValueError(f"not a JSON object but {type(data).__name__}")
            return cls.from_json(data)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise RecordError(f"{path} does not hold what a {cls.KIND} record holds ({exc}): {renew}") from None


def conforms(value: Any, hint: Any) -> bool:
    """Whether a JSON value is of the annotated type (str, int, float, bool, None, lists, dicts, unions, Any and
    the records' own dataclasses): a hand-edited record fails here, not deep in a later stage."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, arg) for arg in args)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, list) and all(conforms(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(conforms(k, args[0]) and conforms(v, args[1]) for k, v in value.items())
    if dataclasses.is_dataclass(hint):
        return isinstance(value, dict) and not mismatches(hint, value)
    return isinstance(value, hint)


def mismatches(cls: type, data: dict[str, Any], where: str = "") -> list[str]:
    """Every way ``data`` is not a ``cls``: unknown, missing and mistyped fields, nested records included."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    problems = [f"unknown field {f'{where}{k}'!r}" for k in data if k not in fields]
    for name, spec in fields.items():
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                problems.append(f"no field {f'{where}{name}'!r}")
        elif dataclasses.is_dataclass(hints[name]) and isinstance(data[name], dict):
            problems += mismatches(hints[name], data[name], f"{where}{name}.")
        elif not conforms(data[name], hints[name]):
            problems.append(f"{where}{name} is {data[name]!r}, not {getattr(hints[name], '__name__', hints[name])}")
    return problems


def build(cls: type[R], data: dict[str, Any]) -> R:
    """``cls`` from checked JSON, its nested records built too."""
    hints = typing.get_type_hints(cls)
    return cls(**{k: build(hints[k], v) if dataclasses.is_dataclass(hints[k]) else v for k, v in data.items()})


class ModelMismatchError(UserError):
    """A model file and the run.json beside it do not belong together."""


@dataclass
class ModelContract:
    """What a saved model needs from its caller: its class order (and the views derived from it) and
    the preprocessing it was trained with; and what identifies the file it describes."""

    classes: list[str]
    groups: dict[str, list[str]]
    screening: str | None
    image_size: int  # the network's input size
    weights: str | None
    resize_size: int
    resize_mode: str
    sha256: str  # of the saved model file
    outputs: int  # the network's output units: one per class
    backbone: str = "xception"  # params train.backbone: its registry entry names the Grad-CAM layer
    seal: str = ""  # digest of every field above and of what it was trained on: an edit breaks it

    def inconsistencies(self) -> list[str]:
        """What in the contract contradicts itself (a hand-edited or foreign run.json)."""
        known = set(self.classes)
        problems = [] if len(self.classes) == self.outputs else [
            f"it lists {len(self.classes)} classes for a model of {self.outputs} outputs"]
        if len(known) != len(self.classes):
            problems.append(f"its classes {self.classes} repeat a name")
        problems += [f"its group {g!r} names {sorted(set(m) - known)}, not classes"
                     for g, m in self.groups.items() if set(m) - known]
        if self.screening is not None and self.screening not in known:
            problems.append(f"its screening class {self.screening!r} is not one of its classes")
        return problems


@dataclass
class TrainingData:
    """What the model was trained on, in the words every place that speaks for the model uses."""

    download_source: str  # params download.source: "synthetic" or "upstream"
    sources: dict[str, int]  # source -> training images
    image_size: int
    weights: str | None
    epochs: int

    @property
    def synthetic(self) -> bool:
        return self.download_source == "synthetic"

    def statement(self) -> str:
        """One sentence: trained on what, at what input, from which weights, for how long."""
        setup = (f"{self.image_size} px input, {'weights ' + self.weights if self.weights else 'from scratch'}, "
                 f"{self.epochs} epochs")
        if self.synthetic:
            return (f"Trained on {sum(self.sources.values())} SYNTHETIC images (the offline demo generator, not "
                    f"X-rays; {setup}): a demonstration model. Its answers on real chest X-rays mean nothing.")
        sources = ", ".join(f"{name} ({n})" for name, n in self.sources.items())
        return (f"Trained on {sum(self.sources.values())} chest X-rays from {sources} ({setup}). Each source "
                "goes with its labels, so the model may read the source: see its model card.")

    def label(self) -> str:
        """A few words for what a model draws (figures, overlays): what it was trained on."""
        if self.synthetic:
            return "SYNTHETIC-data demo model: not for X-rays"
        return f"trained on {sum(self.sources.values())} X-rays: {', '.join(self.sources)}"

    def tags(self) -> dict[str, str]:
        """The same facts as MLflow tags."""
        return {"training.data": "synthetic" if self.synthetic else "real",
                "training.sources": ",".join(self.sources), "training.image_size": str(self.image_size),
                "training.weights": str(self.weights or "none"), "training.epochs": str(self.epochs)}


@dataclass
class RunRecord(Record):
    """``models/run.json``: the train stage's run, beside the model it wrote."""

    KIND: ClassVar[str] = "coronet.run"
    SCHEMA: ClassVar[int] = 3
    WRITER: ClassVar[str] = "train"
    run_id: str | None
    experiment: str
    tracking_uri: str
    tracking_errors: list[str]
    train: dict[str, Any]  # the train params the model was fitted with, as params.yaml spells them: train_params()
    seed: int
    precision: str
    throughput: dict[str, float] | None
    model: ModelContract
    trained_on: TrainingData

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        record = super().from_json(data)
        try:
            record.train_params()
        except UserError as exc:  # a train section this code cannot read: said when the record is read
            raise ValueError(str(exc).removeprefix("params.yaml: ")) from None
        return record

    def train_params(self) -> TrainParams:
        """The train params the model was fitted with, typed and checked as the train stage read them."""
        from coronet.params import Section, TrainParams

        # checkpoint_every_s came after schema 3's first records; it never changes the weights
        return TrainParams.parse(Section({"train": {"checkpoint_every_s": 0, **self.train}}))

    def _digest(self) -> str:
        fields = {"model": {k: v for k, v in dataclasses.asdict(self.model).items() if k != "seal"},
                  "trained_on": dataclasses.asdict(self.trained_on)}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def sealed(self) -> RunRecord:
        """This record with its model's seal, over the contract and what it was trained on: what train writes."""
        return dataclasses.replace(self, model=dataclasses.replace(self.model, seal=self._digest()))

    def check_model(self, model_path: Path, record_path: Path) -> None:
        """ModelMismatchError unless ``model_path`` is the file this record describes and the record agrees
        with itself."""
        retrain = "rerun the train stage (dvc repro), or put the run.json that came with this model beside it"
        problems = ([] if sha256_file(model_path) == self.model.sha256 else
                    ["the model file's sha256 is not the one the record names (the files were swapped or edited)"])
        problems += self.model.inconsistencies()
        if not problems and self.model.seal != self._digest():
            problems.append("its classes, groups, sizes or training data were changed after training (its seal does "
                            "not match)")
        if problems:
            raise ModelMismatchError(f"{model_path} and {record_path} do not belong together: {'; '.join(problems)}: "
                                     f"{retrain}")


@dataclass
class SourcesRecord(Record):
    """``data/raw/sources.json``: what the download stage fetched or drew, per source its archive's file, url,
    size, sha256 and entry count (a source of several files: its label file's, and ``parts``, one such each);
    and the sources params list but switched off."""

    KIND: ClassVar[str] = "coronet.sources"
    WRITER: ClassVar[str] = "download"
    source: str  # upstream or synthetic (download.source)
    archives: dict[str, dict[str, Any]]
    off: list[str] = field(default_factory=list)


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


# The evaluation's records. metrics.json and details.json are DVC metrics files: `dvc metrics show` and `dvc exp
# show` print every key of them as a column, so metrics.json holds few numbers with short names (the screened
# class's sensitivity among the first columns: DVC sorts them) and no schema key: its keys are its version.


@dataclass
class HeadlineRecord(Record):
    """``metrics/metrics.json``: the numbers people compare first (`dvc metrics show` fits 120 columns)."""

    KIND: ClassVar[str] = "coronet.metrics"
    SCHEMA: ClassVar[int] = 0  # unversioned: its fixed keys are checked instead
    WRITER: ClassVar[str] = "evaluate"
    accuracy: float | None
    macro_f1: float | None
    ece: float | None
    n_test: int
    screening: str | None = None  # the screened class (params screening_class), whose two scores follow
    sensitivity: float | None = None
    specificity: float | None = None

    SCORES: ClassVar[tuple[str, str]] = ("sensitivity", "specificity")

    def to_json(self) -> dict[str, Any]:
        plain = {"accuracy": self.accuracy, "macro_f1": self.macro_f1, "ece": self.ece, "n_test": self.n_test}
        if self.screening:
            plain.update({f"{self.screening}_{key}": getattr(self, key) for key in self.SCORES})
        return plain

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HeadlineRecord:
        screened = {key.rpartition("_")[0] for key in data if key.endswith("_sensitivity")}
        if len(screened) > 1:
            raise ValueError(f"sensitivities of {sorted(screened)}: one screened class only")
        screening = next(iter(screened), None)
        fields = {k: v for k, v in data.items() if not (screening and k.startswith(f"{screening}_"))}
        if screening:
            fields.update(screening=screening, **{key: data.get(f"{screening}_{key}") for key in cls.SCORES})
        return super().from_json(fields)


@dataclass
class DetailsRecord(Record):
    """``metrics/details.json``: per class scores, the confusion matrix and the shortcut checks' rates, the
    second metrics file (`dvc metrics show metrics/details.json`, diffed by `dvc exp show` as columns)."""

    KIND: ClassVar[str] = "coronet.details"
    WRITER: ClassVar[str] = "evaluate"
    weighted_f1: float | None
    grouped_accuracy: float | None  # params class_groups' view; None when it is not computed
    per_class: dict[str, dict[str, float | int | None]]  # class -> precision, recall, f1, specificity, support
    confusion_matrix: dict[str, dict[str, int]]  # actual -> predicted -> images
    # Rates, each ``<name>`` beside ``<name>_n``, the films it is of; empty where not computed:
    controls: dict[str, float | int | None]  # same-source controls and the other source called the screened class
    external: dict[str, float | int | None]  # a hospital never seen: the screened class's sensitivity, specificity
    scored: dict[str, float | int | None]  # films only scored against a group: called the screened class, the group


@dataclass
class EvidenceRecord(Record):
    """``metrics/evidence.json``: every number of the evaluation, with its intervals and breakdowns."""

    KIND: ClassVar[str] = "coronet.evidence"
    WRITER: ClassVar[str] = "evaluate"
    accuracy: float | None
    n_test: int
    per_class: dict[str, dict[str, Any]]
    macro_avg: dict[str, float | None]
    weighted_avg: dict[str, float | None]
    confusion_matrix: dict[str, dict[str, int]]
    grouped: dict[str, Any]  # accuracy and matrix of params class_groups, or not_computed
    screening: dict[str, Any]  # the screened class against the rest, or not_computed
    roc_auc: dict[str, float | None]
    intervals: dict[str, Any]  # bootstrap intervals: accuracy, macro_f1, per_class
    calibration: dict[str, Any]  # ece, brier, bins
    by_source: dict[str, Any]
    by_age_band: dict[str, Any]
    confound_probe: dict[str, Any]
    controls: dict[str, Any]  # same-source controls (evaluation.controls.summarize), or not_computed
    external: dict[str, Any]  # a hospital never seen (summarize_external), or not_computed
    scored: dict[str, Any]  # films only scored against a group (summarize_scored), or not_computed
    leakage: dict[str, int]


@dataclass
class StressRecord(Record):
    """``metrics/stress.json``: the stress tests (evaluation.stress) and the lungs-removed test."""

    KIND: ClassVar[str] = "coronet.stress"
    WRITER: ClassVar[str] = "evaluate"
    images: int
    chance: float
    baseline: dict[str, Any]
    transforms: dict[str, dict[str, dict[str, Any]]]  # transform -> strength -> accuracy, flip_rate, flip_to
    warn_flip_rate: float
    screening_class: str | None
    lungs: dict[str, dict[str, Any]]
    warnings: list[str]
