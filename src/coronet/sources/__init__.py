"""One reader per upstream source, each yielding candidates with the same harmonised columns.

Like torchxrayvision's datasets: whatever the source's own format, every candidate carries a label
from the fixed class list, a patient id (prefixed by source, so ids never collide), view, age, sex
and licence, and where its bytes live (an archive and a member inside it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from coronet.errors import UserError


@dataclass(frozen=True)
class Candidate:
    label: str
    source: str
    patient_id: str
    view: str
    age: str
    sex: str
    licence: str
    archive: str
    original_path: str

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
