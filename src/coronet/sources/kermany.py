"""Kermany et al. (Mendeley rscbjbr9sj v2, ChestXRay2017.zip): labels and patients from file names."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path, PurePosixPath

from coronet.sources import Candidate, Rejection

SOURCE = "kermany"
LICENCE = "CC BY 4.0"
# Paediatric anterior-posterior films; ages (1-5 years) are known only from provenance, not per file.
VIEW = "AP"
PNEUMONIA = re.compile(r"^person(?P<person>\d+)_(?P<kind>bacteria|virus)_\d+(?:_\d+)?\.(?:jpe?g|png)$", re.IGNORECASE)
NORMAL = re.compile(r"^(?P<key>(?:NORMAL2-)?IM-\d{4})-\d{4}(?:-\d+)?\.(?:jpe?g|png)$", re.IGNORECASE)
LABELS = {"bacteria": "pneumonia_bacterial", "virus": "pneumonia_viral"}


def is_macos_junk(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return "__MACOSX" in parts or parts[-1].startswith("._") or parts[-1] == ".DS_Store"


def parse_name(folder: str, filename: str) -> tuple[str, str]:
    """(label, patient id) from a Kermany file name; ValueError with the reason when it is not one.

    ``personN`` is the patient of pneumonia images. Normal images carry no person number, so
    ``IM-NNNN`` (or ``NORMAL2-IM-NNNN``) is the best patient key there is.
    """
    folder = folder.upper()
    if match := PNEUMONIA.match(filename):
        if folder != "PNEUMONIA":
            raise ValueError(f"pneumonia file name in the {folder} folder")
        return LABELS[match["kind"].lower()], f"{SOURCE}:person{int(match['person'])}"
    if match := NORMAL.match(filename):
        if folder != "NORMAL":
            raise ValueError(f"normal file name in the {folder} folder")
        return "normal", f"{SOURCE}:{match['key'].upper()}"
    raise ValueError("file name follows none of Kermany's patterns (personN_bacteria_M, personN_virus_M, IM-NNNN-NNNN)")


def candidates(archive_path: Path) -> tuple[list[Candidate], list[Rejection]]:
    """Both train/ and test/ (and val/ in the Kaggle copy) form one pool; macOS junk is ignored."""
    chosen: list[Candidate] = []
    rejected: list[Rejection] = []
    with zipfile.ZipFile(archive_path) as archive:
        names = [i.filename for i in archive.infolist() if not i.is_dir()]
    for name in names:
        if is_macos_junk(name):
            continue
        parts = PurePosixPath(name).parts
        if len(parts) < 3 or parts[-3].lower() not in {"train", "test", "val"}:
            rejected.append(Rejection(SOURCE, "", name, "layout", "not under {train,test}/{NORMAL,PNEUMONIA}/"))
            continue
        try:
            label, patient = parse_name(parts[-2], parts[-1])
        except ValueError as exc:
            rejected.append(Rejection(SOURCE, "", name, "file_name", str(exc)))
            continue
        chosen.append(
            Candidate(label, SOURCE, patient, VIEW, "", "", LICENCE, str(archive_path), name)
        )
    return chosen, rejected
