"""One reader per upstream source, each yielding candidates with the same harmonised columns.

Like torchxrayvision's datasets: whatever the source's own format, every candidate carries a label
from the fixed class list, a patient id (prefixed by source, so ids never collide), view, age, sex
and licence, and where its bytes live (an archive and a member inside it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
    """A record turned down, with a short machine-readable code and a sentence for people."""

    source: str
    row: str
    path: str
    code: str
    reason: str


class MetadataError(ValueError):
    """A source's metadata cannot be read as that source (missing columns, no metadata file)."""
