"""The one params loader: ``params.yaml`` parsed once into one typed, checked object per section.

Each stage parses exactly the sections dvc.yaml lists as its params (``TrainParams.parse(params)``) and
passes the result on; nothing downstream re-reads or re-casts raw values. A missing key, a section that
is not a mapping or a value of the wrong kind is a :class:`~coronet.errors.ParamsError` naming the dotted
key: one ``error:`` line, never a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from coronet.errors import ParamsError
from coronet.imaging import nuisance

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

    def only(self, *known: str) -> Section:
        """This section, if it holds no key but ``known``: a misspelt key (``epoch: 5``) would otherwise be
        ignored without a word while the stage runs with the value it meant to change."""
        if unknown := sorted(set(self) - set(known)):
            where = self.path.rstrip(".") or "the top level"
            raise ParamsError(f"params.yaml: {where} has unknown key(s) {unknown} (a typo?); known: {', '.join(known)}")
        return self

    def section(self, key: str, what: str = "") -> Section:
        """A nested mapping (``evaluate: null`` or a list in its place is an error, not a crash later)."""
        value = self[key]
        if not isinstance(value, Section):
            raise self._bad(key, f"a mapping{what} (see the repository's params.yaml)")
        return value

    def integer(self, key: str, low: int | None = None, high: int | None = None) -> int:
        value = self[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or (
                low is not None and value < low) or (high is not None and value > high):
            bounds = f" >= {low}" if high is None and low is not None else f" in [{low}, {high}]" if high else ""
            raise self._bad(key, "an integer" + bounds)
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
            if high is None:
                bounds = "" if low is None else f" {'>=' if inclusive else '>'} {low:g}"
            else:
                bounds = f" in {'[' if inclusive else '('}{low:g}, {high:g}{']' if inclusive else ')'}"
            raise self._bad(key, "a number" + bounds)
        return float(value)

    def probability(self, key: str) -> float:
        return self.number(key, 0, 1)

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

    def name(self, key: str) -> str:
        """A non-empty string (an experiment or model name): "" or a number is a config error."""
        value = self[key]
        if not isinstance(value, str) or not value.strip():
            raise self._bad(key, "a non-empty name")
        return value.strip()

    def names(self, key: str) -> tuple[str, ...]:
        """A non-empty list of non-empty strings without repeats."""
        value = self[key]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value) or len(
                set(value)) != len(value):
            raise self._bad(key, "a non-empty list of distinct names")
        return tuple(value)


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


def project_seed(params: Section) -> int:
    """The top-level ``seed``: Python, NumPy and TensorFlow randomness, samples and splits derive from it."""
    return params.integer("seed")


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


@dataclass(frozen=True)
class ClassScheme:
    """The class list and what derives from it: the grouped view (the paper's 3 classes) and the class
    screened against the rest. The one place that knows them; everything else takes this."""

    classes: list[str]
    groups: dict[str, list[str]] = field(default_factory=dict)
    screening: str | None = None

    @classmethod
    def parse(cls, params: Section) -> ClassScheme:
        """``classes``, ``class_groups`` and ``screening_class``, checked against each other."""
        classes = list(params.names("classes"))
        groups = params.get("class_groups", {})
        if groups is None:
            groups = {}
        if not isinstance(groups, dict):
            raise ParamsError(f"params.yaml: class_groups must map group names to lists of classes, got {groups!r}")
        for group, members in groups.items():
            if not isinstance(members, list) or not members:
                raise ParamsError(f"params.yaml: class_groups.{group} is empty; give it a list of classes, or remove "
                                  "the group")
        members = [str(m) for v in groups.values() for m in v]
        if unknown := sorted(set(members) - set(classes)):
            raise ParamsError(f"params.yaml: class_groups names {unknown}, which are not in classes {classes}")
        if twice := sorted({m for m in members if members.count(m) > 1}):
            owners = {m: [g for g, v in groups.items() if m in v] for m in twice}
            raise ParamsError("params.yaml: class_groups lists " + "; ".join(
                f"{m} in {' and '.join(map(str, g)) if len(g) > 1 else f'{g[0]} twice'}" for m, g in owners.items())
                + ": every class belongs to exactly one group")
        if groups and (missing := [c for c in classes if c not in members]):
            raise ParamsError(f"params.yaml: class_groups leaves out {missing}: every class belongs to exactly one "
                              "group (or set class_groups: {} to leave the grouped view out)")
        screening = params.get("screening_class")
        if screening is not None and screening not in classes:
            raise ParamsError(f"params.yaml: screening_class {screening!r} is not in classes {classes}")
        return cls(classes, {str(g): [str(m) for m in v] for g, v in groups.items()}, screening)


# download ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveParams:
    """One file to fetch (url, its file name, its sha256 pin); a source's main file also lists the further files
    it needs (``parts``: NIH's image tarballs beside its label file), each fetched and checked the same way."""

    url: str
    filename: str
    sha256: str
    parts: tuple[ArchiveParams, ...] = ()

    @property
    def files(self) -> tuple[ArchiveParams, ...]:
        """The main file, then its parts."""
        return (self, *self.parts)

    @classmethod
    def parse(cls, cfg: Section, parts_allowed: bool = True) -> ArchiveParams:
        cfg.only("url", "filename", "sha256", *(("parts", "enabled") if parts_allowed else ()))
        filename = cfg.name("filename")
        if "/" in filename or "\\" in filename or filename in {".", ".."}:
            raise ParamsError(f"params.yaml: {cfg.path}filename must be a plain file name, got {filename!r}")
        sha = cfg.text("sha256").strip().lower()
        if sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
            raise ParamsError(f"params.yaml: {cfg.path}sha256 must be 64 hex digits or empty, got {sha!r}")
        raw = cfg.get("parts") or []
        if not isinstance(raw, list) or not all(isinstance(part, dict) for part in raw):
            raise ParamsError(f"params.yaml: {cfg.path}parts must be a list of {{url, filename, sha256}}, got {raw!r}")
        parts = tuple(cls.parse(Section(part, f"{cfg.path}parts[{k}]."), parts_allowed=False)
                      for k, part in enumerate(raw))
        names = [filename, *(part.filename for part in parts)]
        if len(set(names)) != len(names):
            raise ParamsError(f"params.yaml: {cfg.path.rstrip('.')} names a file twice: {names}")
        return cls(cfg.text("url"), filename, sha, parts)


@dataclass(frozen=True)
class SyntheticParams:
    seed: int
    images_per_class: int
    image_size: int
    controls_per_finding: int  # same-source non-COVID images per control finding in the COVID twin

    @classmethod
    def parse(cls, cfg: Section) -> SyntheticParams:
        cfg.only("seed", "images_per_class", "image_size", "controls_per_finding")
        return cls(cfg.integer("seed"), cfg.integer("images_per_class", 1), cfg.integer("image_size", 32),
                   cfg.integer("controls_per_finding", 0))


@dataclass(frozen=True)
class DownloadParams:
    classes: list[str]  # the synthetic twins draw these
    source: str  # upstream | synthetic
    mirror: str
    timeout_s: float
    retries: int
    max_archive_bytes: int
    archives: dict[str, ArchiveParams]  # one per source switched on, in merge order (keys: registered sources)
    synthetic: SyntheticParams
    off: tuple[str, ...] = ()  # sources listed with enabled: false: nothing downloaded, nothing merged

    @classmethod
    def parse(cls, params: Section) -> DownloadParams:
        cfg = params.section("download").only("source", "mirror", "timeout_s", "retries", "max_archive_gb", "archives",
                                              "synthetic")
        archives = cfg.section("archives", " of source name -> url, filename, sha256")
        if not archives:
            raise ParamsError("params.yaml: download.archives names no source")
        enabled = {name: archives.section(name).flag("enabled") if "enabled" in archives[name] else True
                   for name in archives}
        if not any(enabled.values()):
            raise ParamsError("params.yaml: every source of download.archives is switched off (enabled: false)")
        return cls(list(params.names("classes")), cfg.choice("source", ("upstream", "synthetic")), cfg.text("mirror"),
                   cfg.number("timeout_s", 0, inclusive=False), cfg.integer("retries", 0),
                   int(cfg.number("max_archive_gb", 0, inclusive=False) * 1e9),
                   {name: parsed for name, parsed in {n: ArchiveParams.parse(archives.section(n)) for n in archives
                                                      }.items() if enabled[name]},
                   SyntheticParams.parse(cfg.section("synthetic")), tuple(n for n, on in enabled.items() if not on))


# merge ------------------------------------------------------------------------------------------------

CONTROL_ROLES = ("evaluate", "train", "off")


@dataclass(frozen=True)
class ControlParams:
    """Same-source controls: the COVID-19 collection's X-rays of other findings. ``classes``: finding
    (a flat value, or one part of a hierarchical ``Pneumonia/Bacterial/Streptococcus``) -> class;
    ``reject``: findings too vague to use; every other non-COVID finding is a control without a class."""

    role: str
    classes: dict[str, str]
    reject: tuple[str, ...]

    @classmethod
    def parse(cls, cfg: Section, classes: list[str]) -> ControlParams:
        role = cfg.only("role", "classes", "reject").choice("role", CONTROL_ROLES)
        mapping = cfg.section("classes", " of class -> list of findings")
        finding_class: dict[str, str] = {}
        for label in mapping:
            if label not in classes:
                raise ParamsError(f"params.yaml: merge.controls.classes names {label!r}, which is not in classes "
                                  f"{classes}")
            for finding in mapping.names(label):
                key = finding.strip().lower()
                if key in finding_class:
                    raise ParamsError(f"params.yaml: merge.controls.classes maps finding {finding!r} twice "
                                      f"({finding_class[key]} and {label}); give each finding one class")
                finding_class[key] = label
        # A list of names; `-S merge.controls.reject=todo` gives one name as a string (never its letters).
        raw = cfg["reject"]
        names = () if raw in (None, []) else (raw,) if isinstance(raw, str) and raw.strip() else cfg.names("reject")
        reject = tuple(f.strip().lower() for f in names)
        if clash := sorted(set(reject) & set(finding_class)):
            raise ParamsError(f"params.yaml: merge.controls.reject lists {clash}, which merge.controls.classes maps "
                              "to a class")
        return cls(role, finding_class, reject)


SOURCE_ROLES = ("train", "external")


@dataclass(frozen=True)
class SourceParams:
    """What one source is for: ``train`` (pooled with the others, split by patient) or ``external`` (never
    trained on, never in validation, scored on every run: a hospital the model never saw); for a source whose
    metadata names findings, finding (lower case) -> class, and finding -> class group for films only scored
    (``scored``: NIH's pneumonias, which have no bacterial/viral subtype); the youngest age taken (``min_age``,
    for sources that record ages) and at most how many films it gives each class (``counts``)."""

    role: str = "train"
    classes: dict[str, str] = field(default_factory=dict)
    scored: dict[str, str] = field(default_factory=dict)
    min_age: int | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, cfg: Section, classes: list[str]) -> SourceParams:
        cfg.only("role", "classes", "scored", "min_age", "counts")
        findings = _findings(cfg, "classes", classes)
        scored = _findings(cfg, "scored", None)
        if both := sorted(set(findings) & set(scored)):
            raise ParamsError(f"params.yaml: {cfg.path}classes and {cfg.path}scored both list {both}")
        counts = cfg.section("counts", " of class -> most films") if "counts" in cfg else Section({})
        if unknown := sorted(set(counts) - set(classes)):
            raise ParamsError(f"params.yaml: {counts.path}{unknown[0]} is not in classes {classes}")
        min_age = None if cfg.get("min_age") is None else cfg.integer("min_age", 0, 130)
        return cls(cfg.choice("role", SOURCE_ROLES), findings, scored, min_age,
                   {label: counts.integer(label, low=0) for label in counts})


def _findings(cfg: Section, key: str, names: list[str] | None) -> dict[str, str]:
    """``key``: name -> findings, as finding (lower case) -> name; ``names`` the allowed names (None: any)."""
    mapping = cfg.section(key, " of name -> list of findings") if key in cfg else Section({})
    found: dict[str, str] = {}
    for name in mapping:
        if names is not None and name not in names:
            raise ParamsError(f"params.yaml: {mapping.path}{name} is not in classes {names}")
        for finding in mapping.names(name):
            if finding.strip().lower() in found:
                raise ParamsError(f"params.yaml: {mapping.path.rstrip('.')} maps finding {finding!r} twice")
            found[finding.strip().lower()] = name
    return found


@dataclass(frozen=True)
class MergeParams:
    classes: list[str]
    seed: int
    views: tuple[str, ...]
    covid_finding: str
    near_duplicate_max_distance: int
    counts: dict[str, int]
    controls: ControlParams
    sources: dict[str, SourceParams] = field(default_factory=dict)  # a source not listed is trained on

    def source(self, name: str) -> SourceParams:
        return self.sources.get(name, SourceParams())

    @classmethod
    def parse(cls, params: Section) -> MergeParams:
        cfg, classes = params.section("merge"), list(params.names("classes"))
        cfg.only("views", "covid_finding", "near_duplicate_max_distance", "controls", "counts", "sources")
        counts = cfg.section("counts", " of class -> number of images")
        roles = cfg.section("sources", " of source -> role (and classes)")
        return cls(classes, project_seed(params), cfg.names("views"), cfg.name("covid_finding"),
                   cfg.integer("near_duplicate_max_distance", low=0),
                   {label: counts.integer(label, low=0) for label in classes},
                   ControlParams.parse(cfg.section("controls"), classes),
                   {name: SourceParams.parse(roles.section(name, " with a role"), classes) for name in roles})


# resize, split ----------------------------------------------------------------------------------------

RESIZE_MODES = ("stretch", "pad")
GROUP_BY = ("patient", "none")


@dataclass(frozen=True)
class ResizeParams:
    size: int
    mode: str
    workers: int

    @classmethod
    def parse(cls, params: Section) -> ResizeParams:
        cfg = params.section("resize").only("size", "mode", "workers")
        return cls(cfg.integer("size", low=8), cfg.choice("mode", RESIZE_MODES), cfg.integer("workers", low=0))


@dataclass(frozen=True)
class SplitParams:
    classes: list[str]
    seed: int
    group_by: str
    test_size: float
    val_size: float

    @classmethod
    def parse(cls, params: Section) -> SplitParams:
        cfg = params.section("split").only("group_by", "test_size", "val_size")
        return cls(list(params.names("classes")), project_seed(params), cfg.choice("group_by", GROUP_BY),
                   cfg.number("test_size", 0, 1, inclusive=False), cfg.number("val_size", 0, 1, inclusive=False))


# train ------------------------------------------------------------------------------------------------

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
LR_DECAYS = ("none", "cosine")


@dataclass(frozen=True)
class AugmentParams:
    """The authors' ImageDataGenerator settings (training batches only)."""

    rotation_deg: float
    width_shift: float
    height_shift: float
    shear_deg: float
    zoom: float
    channel_shift: float
    horizontal_flip: bool
    vertical_flip: bool

    @property
    def active(self) -> bool:
        """False when every setting is off: then training batches are left as they are."""
        return any(asdict(self).values())

    @classmethod
    def parse(cls, cfg: Section) -> AugmentParams:
        cfg.only(*(f.name for f in fields(cls)))
        return cls(cfg.number("rotation_deg", 0), cfg.number("width_shift", 0, 1), cfg.number("height_shift", 0, 1),
                   cfg.number("shear_deg", 0), cfg.number("zoom", 0, 1), cfg.number("channel_shift", 0),
                   cfg.flag("horizontal_flip"), cfg.flag("vertical_flip"))


@dataclass(frozen=True)
class NuisanceStep:
    """One nuisance augmentation: applied to a training image with probability ``p``, at a strength
    drawn uniformly from [low, high] (the stress test of the same name, at a random strength)."""

    p: float
    low: float
    high: float


@dataclass(frozen=True)
class NuisanceParams:
    """Shortcut mitigation: nuisance transforms on training images only (all off in the paper's run)."""

    steps: dict[str, NuisanceStep]

    @property
    def active(self) -> dict[str, NuisanceStep]:
        return {name: step for name, step in self.steps.items() if step.p > 0}

    @classmethod
    def parse(cls, cfg: Section) -> NuisanceParams:
        steps = {}
        for name in cfg:
            if name not in nuisance.AUGMENTATIONS:
                raise ParamsError(f"params.yaml: train.nuisance names unknown augmentation {name!r}; known: "
                                  f"{', '.join(nuisance.AUGMENTATIONS)}")
            step = cfg.section(name, " with p and strength: [low, high]").only("p", "strength")
            strength = step["strength"]
            if not (isinstance(strength, list) and len(strength) == 2):
                raise ParamsError(f"params.yaml: train.nuisance.{name}.strength must be [low, high], got {strength!r}")
            low, high = (_strength(f"train.nuisance.{name}.strength", name, v) for v in strength)
            if low > high:
                raise ParamsError(f"params.yaml: train.nuisance.{name}.strength must be [low, high] with low <= high, "
                                  f"got {strength!r}")
            steps[name] = NuisanceStep(step.probability("p"), low, high)
        return cls(steps)


MIN_CLIPNORM = 1e-3


@dataclass(frozen=True)
class TrainParams:
    backbone: str  # a name of coronet.model.network.BACKBONES: xception, the paper's
    image_size: int
    weights: str | None  # imagenet | a path | None (from scratch)
    dropout: float
    dense_units: int
    learning_rate: float
    warmup_epochs: int
    lr_decay: str  # none | cosine
    clipnorm: float | None
    batch_size: int
    epochs: int
    augment: AugmentParams
    nuisance: NuisanceParams
    bn_momentum: float | None
    recalibrate_bn: bool
    precision: str
    balance_sources: bool
    deterministic: bool
    checkpoint: bool
    checkpoint_every_s: float

    @classmethod
    def parse(cls, params: Section) -> TrainParams:
        cfg = params.section("train").only(*(f.name for f in fields(cls)))
        weights = cfg["weights"]
        if weights is not None and not isinstance(weights, str):
            raise ParamsError(f"params.yaml: train.weights must be imagenet, none or a path, got {weights!r}")
        weights = None if weights is None or weights.strip().lower() in {"", "none", "null"} else weights.strip()
        if cfg.integer("warmup_epochs", low=0) > cfg.integer("epochs", low=1):
            raise ParamsError(f"params.yaml: train.warmup_epochs ({cfg['warmup_epochs']}) is more than train.epochs "
                              f"({cfg['epochs']}): the learning rate would never reach train.learning_rate")
        if not isinstance(cfg["backbone"], str) or not cfg["backbone"].strip():
            raise ParamsError(f"params.yaml: train.backbone must name a backbone (xception), got {cfg['backbone']!r}")
        return cls(
            backbone=cfg["backbone"].strip(),
            image_size=cfg.integer("image_size", low=32),  # each backbone's own minimum: the train stage checks it
            weights="imagenet" if weights and weights.lower() == "imagenet" else weights,
            dropout=cfg.number("dropout", 0, 1, inclusive=True),
            dense_units=cfg.integer("dense_units", low=1),
            learning_rate=cfg.number("learning_rate", 0, inclusive=False),
            warmup_epochs=cfg.integer("warmup_epochs", low=0),
            lr_decay=cfg.choice("lr_decay", LR_DECAYS),
            # below this a clip stops learning (1e-300 was accepted); null switches clipping off
            clipnorm=None if cfg["clipnorm"] is None else cfg.number("clipnorm", MIN_CLIPNORM),
            batch_size=cfg.integer("batch_size", low=1),
            epochs=cfg.integer("epochs", low=1),
            augment=AugmentParams.parse(cfg.section("augment")),
            nuisance=NuisanceParams.parse(cfg.section("nuisance")),
            bn_momentum=None if cfg["bn_momentum"] is None else cfg.number("bn_momentum", 0, 1, inclusive=False),
            recalibrate_bn=cfg.flag("recalibrate_bn"),
            precision=cfg.choice("precision", PRECISIONS),
            balance_sources=cfg.flag("balance_sources"),
            deterministic=cfg.flag("deterministic"),
            checkpoint=cfg.flag("checkpoint"),
            checkpoint_every_s=cfg.number("checkpoint_every_s", 0),
        )

    def as_dict(self) -> dict[str, Any]:
        """The section as params.yaml spells it (MLflow params, run.json)."""
        fields = asdict(self)
        fields["nuisance"] = {name: {"p": s.p, "strength": [s.low, s.high]} for name, s in self.nuisance.steps.items()}
        return fields


# evaluate ---------------------------------------------------------------------------------------------


def _strength(key: str, transform: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ParamsError(f"params.yaml: {key} must hold numbers, got {value!r}")
    try:
        nuisance.check_strength(transform, float(value))
    except ValueError as exc:
        raise ParamsError(f"params.yaml: {key}: {exc}") from None
    return float(value)


@dataclass(frozen=True)
class StressParams:
    warn_flip_rate: float
    transforms: dict[str, tuple[float, ...]]  # transform -> strengths

    @classmethod
    def parse(cls, cfg: Section) -> StressParams:
        cfg.only("warn_flip_rate", "transforms")
        transforms = cfg.section("transforms", " of transform -> list of strengths")
        if unknown := sorted(set(transforms) - set(nuisance.TRANSFORMS)):
            raise ParamsError(f"params.yaml: evaluate.stress.transforms names unknown transform(s) {unknown}; "
                              f"known: {', '.join(nuisance.TRANSFORMS)}")
        if not transforms:
            raise ParamsError("params.yaml: evaluate.stress.transforms lists nothing, which would switch the stress "
                              "tests and the lungs-removed test off; list at least lungs_removed: [0.7]")
        checked = {}
        for name, strengths in transforms.items():
            key = f"evaluate.stress.transforms.{name}"
            if not isinstance(strengths, list) or not strengths:
                raise ParamsError(f"params.yaml: {key} must be a list of strengths "
                                  f"({nuisance.TRANSFORMS[name].valid}), got {strengths!r}")
            checked[name] = tuple(_strength(key, name, v) for v in strengths)
        return cls(cfg.probability("warn_flip_rate"), checked)


@dataclass(frozen=True)
class EvaluateParams:
    scheme: ClassScheme
    seed: int
    batch_size: int
    gradcam_per_class: int
    ci_level: float
    bootstrap_resamples: int
    calibration_bins: int
    probe_folds: int
    stress: StressParams

    @classmethod
    def parse(cls, params: Section) -> EvaluateParams:
        cfg = params.section("evaluate").only(*(f.name for f in fields(cls) if f.name not in {"scheme", "seed"}))
        return cls(ClassScheme.parse(params), project_seed(params), cfg.integer("batch_size", 1),
                   cfg.integer("gradcam_per_class", 0), cfg.number("ci_level", 0, 1, inclusive=False),
                   cfg.integer("bootstrap_resamples", 1), cfg.integer("calibration_bins", 1),
                   cfg.integer("probe_folds", 2), StressParams.parse(cfg.section("stress")))


# serving, tracking ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServingParams:
    """What the served model (MLflow pyfunc) and the page accept per request."""

    max_rows: int
    batch_size: int
    max_upload_mb: float
    low_confidence: float  # a top probability under this is flagged

    @classmethod
    def parse(cls, params: Section) -> ServingParams:
        cfg = params.section("serving").only(*(f.name for f in fields(cls)))
        return cls(cfg.integer("max_rows", 1), cfg.integer("batch_size", 1),
                   cfg.number("max_upload_mb", 0, inclusive=False), cfg.probability("low_confidence"))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrackingParams:
    experiment: str
    registered_model: str

    @classmethod
    def parse(cls, params: Section, *, experiment_only: bool = False) -> TrackingParams:
        cfg = params.section("tracking").only(*(f.name for f in fields(cls)))
        return cls(cfg.name("experiment"), "" if experiment_only else cfg.name("registered_model"))
