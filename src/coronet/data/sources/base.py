"""What every source reader yields, and what a source is.

Like torchxrayvision's datasets: whatever the source's own format, every candidate carries a label from
the fixed class list, a patient id (prefixed by source, so ids never collide), view, age, sex and
licence, and where its bytes live (an archive and a member inside it).
"""

from __future__ import annotations

import io
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

import pandas as pd

from coronet.errors import UserError

if TYPE_CHECKING:
    from coronet.params import MergeParams, SyntheticParams

# What a chosen image is for: the classification pool (Table II), a same-source control that is only
# ever scored, a same-source control mixed into the pool (params merge.controls.role: train), an image of
# an external source (params merge.sources.<name>.role: external), only ever scored, or a film of a finding no
# class names exactly (NIH's pneumonias: params merge.sources.<name>.scored), only scored against its group.
COHORTS = ("pool", "control", "mixed", "external", "scored")
SCORED_ONLY = ("control", "external", "scored")  # cohorts never trained on: each is kept apart from the pool


@dataclass(frozen=True)
class Candidate:
    label: str  # a class of params classes; "" for a control without a class
    source: str
    patient_id: str
    view: str
    age: str
    sex: str
    licence: str
    archive: str
    original_path: str
    finding: str = ""  # the source's own diagnosis text, where it has one
    cohort: str = "pool"
    group: str = ""  # a scored film's class group (params class_groups), the answer that would be right

    def as_row(self) -> dict[str, str]:
        return asdict(self)

    def in_role(self, role: str) -> Candidate:
        """This candidate as its source's role has it: a pool image of an external source is external."""
        return replace(self, cohort="external") if role == "external" and self.cohort == "pool" else self


@dataclass(frozen=True)
class Rejection:
    """A record turned down, with a short machine-readable code and a sentence for people.

    ``label`` is the class the record would have had, where known (so a class left without images can
    say why); ``duplicate_of`` names the kept image a duplicate repeats.
    """

    source: str
    row: str
    path: str
    code: str
    reason: str
    label: str = ""
    duplicate_of: str = ""


def patient_round_robin(pool: list[Candidate], rng: random.Random) -> Iterator[Candidate]:
    """Shuffled patients, one image from each in turn: a count spreads over as many patients as it can."""
    by_patient: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in sorted(pool, key=lambda c: (c.patient_id, c.original_path)):
        by_patient[candidate.patient_id].append(candidate)
    patients = sorted(by_patient)
    rng.shuffle(patients)
    queues = [by_patient[p] for p in patients]
    for queue in queues:
        rng.shuffle(queue)
    depth = 0
    while any(depth < len(q) for q in queues):
        for queue in queues:
            if depth < len(queue):
                yield queue[depth]
        depth += 1


class MetadataError(UserError):
    """A source's metadata cannot be read as that source (missing columns, no metadata file)."""


class Source(Protocol):
    """One upstream source: its reader, its licence and cohort for the model card, and its synthetic twin.

    A module in :mod:`coronet.data.sources` that defines ``SOURCE`` (an object of this shape) is a source;
    params ``download.archives.<name>`` says where its archive comes from.
    """

    name: str  # the key in params download.archives and the manifest's source column
    title: str  # who made it and what it shows, for the model card
    licence: str
    cohort_ages: str  # the cohort's ages when files carry none ("" when each file has its age)
    caveats: tuple[str, ...]  # what a reader of the model card must know about its images or labels
    maps_findings: bool  # its labels come from params merge.sources.<name>.classes (finding -> class)

    def candidates(self, archive: Path, cfg: MergeParams) -> tuple[list[Candidate], list[Rejection]]:
        """Every image of the archive that could be chosen, and every record turned down with its reason."""
        ...

    def write_synthetic(self, path: Path, cfg: SyntheticParams, classes: list[str]) -> None:
        """An archive in exactly this source's layout, with generated images (the offline twin). A source of
        several files (params ``download.archives.<name>.parts``) also takes ``parts``: the paths to write
        them to."""
        ...


def find_metadata(names: list[str], archive: str) -> str:
    """An archive's metadata.csv: at the top or one folder down (GitHub archives add a root folder)."""
    found = [n for n in names if PurePosixPath(n).name == "metadata.csv" and len(PurePosixPath(n).parts) <= 2]
    if not found:
        raise MetadataError(f"no metadata.csv at the top of the {archive} archive")
    return min(found, key=len)


def read_metadata_csv(data: bytes | str, required: tuple[str, ...], archive: str, params_key: str) -> pd.DataFrame:
    """A source's metadata.csv as strings, column names stripped and lower case, cells stripped; a
    MetadataError naming what is missing when it is not that source's file."""
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise MetadataError(f"the {archive} archive's metadata.csv cannot be read as CSV ({exc}); "
                            f"check {params_key} or the mirror's copy") from exc
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    frame = frame.loc[:, [c for c in frame.columns if c and not c.startswith("unnamed:")]]
    if missing := [c for c in required if c not in frame.columns]:
        raise MetadataError(f"the {archive} archive's metadata.csv lacks column(s) {missing} (it has "
                            f"{list(frame.columns)}): is {params_key} an archive of that source?")
    return frame.apply(lambda col: col.str.strip())
