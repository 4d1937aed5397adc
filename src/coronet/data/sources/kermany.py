"""Kermany et al. (Mendeley rscbjbr9sj v2, ChestXRay2017.zip): labels and patients from file names."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import numpy as np

from coronet.data import archives
from coronet.data.phantom import draw_xray, encode, write_zip
from coronet.data.sources.base import Candidate, Rejection
from coronet.params import MergeParams, SyntheticParams

NAME = "kermany"
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
        return LABELS[match["kind"].lower()], f"{NAME}:person{int(match['person'])}"
    if match := NORMAL.match(filename):
        if folder != "NORMAL":
            raise ValueError(f"normal file name in the {folder} folder")
        return "normal", f"{NAME}:{match['key'].upper()}"
    raise ValueError("file name follows none of Kermany's patterns (personN_bacteria_M, personN_virus_M, IM-NNNN-NNNN)")


class KermanySource:
    name = NAME
    title = "Kermany et al. ChestXRay2017 (normal, bacterial and viral pneumonia; children aged 1-5; one hospital)"
    licence = "CC BY 4.0"
    cohort_ages = "1-5 by provenance"  # files carry no age; the cohort's (MLflow metric names allow no brackets)
    caveats = ("its labels come from file names; per-image age and sex are unknown",)
    maps_findings = False  # its labels: file names

    def candidates(self, archive: Path, cfg: MergeParams) -> tuple[list[Candidate], list[Rejection]]:
        """Both train/ and test/ (and val/ in the Kaggle copy) form one pool; macOS junk is ignored."""
        chosen: list[Candidate] = []
        rejected: list[Rejection] = []
        for name in archives.names(archive):
            if is_macos_junk(name):
                continue
            parts = PurePosixPath(name).parts
            if len(parts) < 3 or parts[-3].lower() not in {"train", "test", "val"}:
                rejected.append(Rejection(NAME, "", name, "layout", "not under {train,test}/{NORMAL,PNEUMONIA}/"))
                continue
            try:
                label, patient = parse_name(parts[-2], parts[-1])
            except ValueError as exc:
                rejected.append(Rejection(NAME, "", name, "file_name", str(exc)))
                continue
            chosen.append(Candidate(label, NAME, patient, VIEW, "", "", self.licence, str(archive), name))
        return chosen, rejected

    def write_synthetic(self, path: Path, cfg: SyntheticParams, classes: list[str]) -> None:
        write_archive(path, cfg)


SOURCE = KermanySource()

# The synthetic twin ---------------------------------------------------------------------------------


def write_archive(path: Path, cfg: SyntheticParams) -> None:
    """ChestXRay2017.zip: chest_xray/{train,test}/{NORMAL,PNEUMONIA} with Kermany's file names."""
    rng = np.random.default_rng([cfg.seed, 2])
    size, n_per_class = cfg.image_size, cfg.images_per_class
    entries: dict[str, bytes] = {}

    def put(name: str, label: str) -> bytes:
        w, h = (int(size * rng.uniform(1.0, 1.4)) for _ in range(2))
        data = encode(draw_xray(rng, label, size), "JPEG", "L", (w, h))
        folder = "test" if rng.uniform() < 0.2 else "train"
        sub = "NORMAL" if label == "normal" else "PNEUMONIA"
        entries[f"chest_xray/{folder}/{sub}/{name}"] = data
        return data

    made = 0
    while made < n_per_class:
        number, prefix = int(rng.integers(1, 9000)), "NORMAL2-" if rng.uniform() < 0.3 else ""
        for shot in range(1, min(int(rng.integers(1, 3)), n_per_class - made) + 1):
            put(f"{prefix}IM-{number:04d}-{shot:04d}.jpeg", "normal")
            made += 1
    counters = {"bacteria": 0, "virus": 0}
    person = 0
    while min(counters.values()) < n_per_class:
        person += 1
        kinds = ["bacteria", "virus"] if person % 5 == 0 else [str(rng.choice(["bacteria", "virus"]))]
        for kind in kinds:
            for _ in range(int(rng.integers(1, 3))):
                if counters[kind] >= n_per_class:
                    break
                counters[kind] += 1
                label = "pneumonia_bacterial" if kind == "bacteria" else "pneumonia_viral"
                put(f"person{person}_{kind}_{counters[kind] + person}.jpeg", label)
    # The quirks of the real zip: macOS junk, an exact duplicate, a truncated JPEG, a stray file.
    first_name, first = next((n, d) for n, d in sorted(entries.items()) if "/NORMAL/" in n)
    entries["chest_xray/train/NORMAL/NORMAL2-IM-9999-0001.jpeg"] = first
    entries["chest_xray/train/PNEUMONIA/person9999_bacteria_1.jpeg"] = first[: len(first) // 3]
    entries["chest_xray/.DS_Store"] = b"\x00\x00\x00\x01Bud1"
    entries[f"__MACOSX/chest_xray/train/NORMAL/._{Path(first_name).name}"] = b"\x00\x05\x16\x07junk"
    entries["chest_xray/train/NORMAL/notes.txt"] = b"not an image\n"
    write_zip(path, sorted(entries.items()))
