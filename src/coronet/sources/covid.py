"""Cohen et al.'s covid-chestxray-dataset (GitHub archive): metadata.csv of any era plus images/."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

import pandas as pd

from coronet.sources import Candidate, MetadataError, Rejection

SOURCE = "covid"
REQUIRED = ("patientid", "finding", "view", "filename")


def find_metadata(names: list[str]) -> str:
    """The archive's metadata.csv: at the top or one folder down (GitHub archives add a root folder)."""
    found = [n for n in names if PurePosixPath(n).name == "metadata.csv" and len(PurePosixPath(n).parts) <= 2]
    if not found:
        raise MetadataError("no metadata.csv at the top of the COVID-19 archive")
    return min(found, key=len)


def read_metadata(data: bytes | str) -> pd.DataFrame:
    """metadata.csv of any upstream era, with harmonised column names.

    Old headers differ (``Patientid``, `` url``), the newest rows end in a trailing comma (an empty
    column) and the oldest have no ``modality`` column: all are read alike here.
    """
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise MetadataError(f"the COVID-19 archive's metadata.csv cannot be read as CSV ({exc}); "
                            "check download.covid.url or the mirror's copy") from exc
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    frame = frame.loc[:, [c for c in frame.columns if c and not c.startswith("unnamed:")]]
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise MetadataError(f"the COVID-19 archive's metadata.csv lacks column(s) {missing} (it has "
                            f"{list(frame.columns)}): is download.covid.url an archive of covid-chestxray-dataset?")
    for optional in ("modality", "folder", "age", "sex", "license"):
        if optional not in frame.columns:
            frame[optional] = ""
    return frame.apply(lambda col: col.str.strip())


def is_xray(row: pd.Series) -> bool:
    if row["modality"]:
        return row["modality"].lower().replace("-", "") == "xray"
    return row["folder"] != "volumes"  # the oldest metadata: CT volumes sit in volumes/


def candidates(archive_path: Path, views: list[str], finding: str) -> tuple[list[Candidate], list[Rejection]]:
    """Every X-ray row of the chosen views whose finding contains ``finding``; the rest rejected."""
    with zipfile.ZipFile(archive_path) as archive:
        names = archive.namelist()
        meta_name = find_metadata(names)
        frame = read_metadata(archive.read(meta_name))
    root = PurePosixPath(meta_name).parent
    members = set(names)
    chosen: list[Candidate] = []
    rejected: list[Rejection] = []
    wanted_views = {v.strip().lower() for v in views}
    for index, row in frame.iterrows():
        folder = row["folder"] or "images"
        member = str(root / folder / row["filename"])
        line = str(int(index) + 2)  # the CSV line number, header being line 1

        def reject(code: str, reason: str, line: str = line, member: str = member) -> None:
            # Rows past the finding test are COVID-19 images the class could have had.
            rejected.append(Rejection(SOURCE, line, member, code, reason, label="" if code == "finding" else "covid"))

        if finding.lower() not in row["finding"].lower():
            reject("finding", f"finding {row['finding']!r} does not contain {finding!r}")
        elif not is_xray(row):
            reject("modality", f"modality {row['modality'] or folder!r} is not an X-ray")
        elif row["view"].lower() not in wanted_views:
            reject("view", f"view {row['view']!r} is not one of {views}")
        elif not row["filename"] or member not in members:
            reject("missing_file", f"image {member!r} named in metadata is not in the archive")
        else:
            chosen.append(
                Candidate(
                    label="covid",
                    source=SOURCE,
                    patient_id=f"{SOURCE}:{row['patientid']}",
                    view=row["view"],
                    age=row["age"],
                    sex=row["sex"],
                    licence=row["license"] or "unspecified (see the source article)",
                    archive=str(archive_path),
                    original_path=member,
                )
            )
    return chosen, rejected
