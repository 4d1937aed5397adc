"""What every source reader yields, and what a source is.

Like torchxrayvision's datasets: whatever the source's own format, every candidate carries a label from
the fixed class list, a patient id (prefixed by source, so ids never collide), view, age, sex and
licence, and where its bytes live (an archive and a member inside it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from coronet.errors import UserError

if TYPE_CHECKING:
    from coronet.params import MergeParams, SyntheticParams

# What a chosen image is for: the classification pool (Table II), a same-source control that is only
# ever scored, or a same-source control mixed into the pool (params merge.controls.role: train).
COHORTS = ("pool", "control", "mixed")


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

    def as_row(self) -> dict[str, str]:
        return asdict(self)


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

    def candidates(self, archive: Path, cfg: MergeParams) -> tuple[list[Candidate], list[Rejection]]:
        """Every image of the archive that could be chosen, and every record turned down with its reason."""
        ...

    def write_synthetic(self, path: Path, cfg: SyntheticParams, classes: list[str]) -> None:
        """An archive in exactly this source's layout, with generated images (the offline twin)."""
        ...
