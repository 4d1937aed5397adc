"""NIH ChestX-ray14 (Wang et al. 2017; NIH Clinical Center, Bethesda): adult films of a fourth hospital, a source
of several files: the label file ``Data_Entry_2017_v2020.csv`` (gzipped) and image tarballs ``images_NNN.tar.gz``
that each unpack to ``images/<Image Index>``.

The label file as it really is: its header splits into 11 fields (``OriginalImage[Width,Height]`` and
``OriginalImagePixelSpacing[x,y]`` hold a comma each), ``Finding Labels`` joins several findings with ``|``
(text-mined from reports, no bacterial/viral subtype), ``Patient Age`` is in years, ``View Position`` PA or AP.
params ``merge.sources.nih`` map findings to classes (``No Finding`` -> normal: a film so labelled alone), to a
class group only scored (``Pneumonia``: an adult's pneumonia, never trained on), the youngest age taken and how
many films a class takes from here (chosen across patients). A label row whose film is in no downloaded part is
counted in one line. The download stage lists each part's files; only the films chosen here are copied out of
a part, in one pass (:func:`coronet.data.manifest.extract_chosen`).
"""

from __future__ import annotations

import csv
import gzip
import io
import random
import re
import tarfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from coronet.data import archives
from coronet.data.phantom import clinic_look, draw_xray, encode
from coronet.data.sources.base import Candidate, MetadataError, Rejection, patient_round_robin, read_metadata_csv
from coronet.params import MergeParams, SyntheticParams

NAME = "nih"
LICENCE = "unrestricted use, cite Wang et al. 2017 (NIH Clinical Center)"
REQUIRED = ("image index", "finding labels", "patient id", "patient age", "patient gender", "view position")
FIELDS = 11  # the header's names, two of them split at the comma they hold
# NIH's own download script (batch_download_zips.py, beside the dataset on nihcc.app.box.com/v/ChestXray-NIHCC)
# links the 12 parts in this order; params download.archives.nih.parts takes them by file name.
PARTS = {f"images_{k:03d}.tar.gz": f"https://nihcc.box.com/shared/static/{key}.gz" for k, key in enumerate([
    "vfk49d74nhbxq3nqjg0900w5nvkorp5c", "i28rlmbvmfjbl8p2n3ril0pptcmcu9d1", "f1t00wrtdk94satdfb9olcolqx20z2jp",
    "0aowwzs5lhjrceb3qp67ahp0rd1l1etg", "v5e3goj22zr6h8tzualxfsqlqaygfbsn", "asi7ikud9jwnkrnkj99jnpfkjdes7l6l",
    "jn1b4mw4n6lnh74ovmcjb8y48h8xj07n", "tvpxmn7qyrgl0w8wfh9kqfjskv6nmm1j", "upyy3ml7qdumlgk2rfcvlb9k6gvqq2pj",
    "l6nilvfa9cg3s28tqv1qc1olm3gnz54p", "hhq8fkdgvcari67vfhs7ppg2w6ni4jze", "ioqwiy20ihqwyr8pf4c24eazhh281pbu"], 1)}


def read_labels(path: Path) -> pd.DataFrame:
    """The label file (gzipped or plain) as strings, columns lower case with ``_`` for spaces (``image_index``);
    a MetadataError when it is not NIH's."""
    data = path.read_bytes()
    try:
        text = gzip.decompress(data).decode("utf-8-sig") if data[:2] == b"\x1f\x8b" else data.decode("utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise MetadataError(f"the NIH label file {path.name} cannot be read ({exc}): check "
                            f"download.archives.{NAME}.url or the mirror's copy") from None
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0])), [])
    if len(header) != FIELDS:
        raise MetadataError(f"the NIH label file {path.name} has {len(header)} header fields, not NIH's {FIELDS} "
                            f"({header[:4]}...): is download.archives.{NAME}.url the Data_Entry_2017_v2020 file?")
    frame = read_metadata_csv(text, REQUIRED, "NIH", f"download.archives.{NAME}.url")
    return frame.rename(columns=lambda c: c.replace(" ", "_"))


def age_in_years(text: str) -> int | None:
    """``57`` (the 2020 file) or ``057Y`` (the 2017 one) -> 57; anything else None."""
    match = re.fullmatch(r"0*(\d{1,3})\s*[Yy]?", text.strip())
    return int(match[1]) if match else None


def downloaded_parts(label_file: Path) -> dict[str, tuple[str, str]]:
    """Film file name -> (part, member), from the file lists the download stage keeps beside each part."""
    found: dict[str, tuple[str, str]] = {}
    for part in sorted(p for p in label_file.parent.iterdir() if archives.is_tar(p)):
        listed = archives.member_list(part)
        if not listed.is_file():
            raise MetadataError(f"{part.name} has no file list beside it ({listed.name}): rerun the download stage")
        for member in listed.read_text().splitlines():
            found.setdefault(PurePosixPath(member).name, (str(part), member))
    return found


class NihSource:
    name = NAME
    title = "NIH ChestX-ray14 (NIH Clinical Center, Bethesda; frontal films, mostly adults; text-mined labels)"
    licence = LICENCE
    cohort_ages = ""  # each row has its age
    caveats = ("its labels are text-mined from radiology reports, not read film by film",
               "many of its films are AP films of inpatients (portable, supine)",
               "one hospital: it brings adult films, not the variety of many hospitals",
               "its pneumonias have no bacterial or viral subtype: they are only scored, never trained on")
    maps_findings = True  # merge.sources.nih.classes and .scored

    def candidates(self, archive: Path, cfg: MergeParams) -> tuple[list[Candidate], list[Rejection]]:
        """Rows of the chosen views and ages whose findings params map, whose film is in a downloaded part: each
        class's films chosen across patients up to ``merge.sources.nih.counts``, every scored film."""
        frame = read_labels(archive)
        where = downloaded_parts(archive)
        own = cfg.source(NAME)
        views = {v.strip().lower() for v in cfg.views}
        by_label: dict[str, list[Candidate]] = {}
        scored: list[Candidate] = []
        rejected: list[Rejection] = []
        absent = 0
        for index, row in enumerate(frame.itertuples(index=False)):
            film, line = row.image_index, str(index + 2)
            if film not in where:
                absent += 1
                continue
            part, member = where[film]
            findings = [f.strip() for f in row.finding_labels.split("|") if f.strip()]
            label = own.classes.get(findings[0].lower(), "") if len(findings) == 1 else ""
            group = next((own.scored[f.lower()] for f in findings if f.lower() in own.scored), "")
            age = age_in_years(row.patient_age)

            def reject(code: str, reason: str, line: str = line, member: str = member, label: str = label) -> None:
                rejected.append(Rejection(NAME, line, member, code, reason, label))

            if not label and not group:
                reject("finding", f"findings {row.finding_labels!r} map to no class (merge.sources.{NAME}.classes) "
                                  f"and are not scored (merge.sources.{NAME}.scored)")
            elif row.view_position.lower() not in views:
                reject("view", f"view {row.view_position!r} is not one of {list(cfg.views)}")
            elif own.min_age is not None and (age is None or age < own.min_age):
                reject("age", f"age {row.patient_age!r} is under merge.sources.{NAME}.min_age ({own.min_age})")
            else:
                candidate = Candidate(label=label, source=NAME, patient_id=f"{NAME}:{row.patient_id}",
                                      view=row.view_position, age="" if age is None else str(age),
                                      sex=row.patient_gender, licence=LICENCE, archive=part, original_path=member,
                                      finding=row.finding_labels, cohort="pool" if label else "scored", group=group)
                (by_label.setdefault(label, []) if label else scored).append(candidate)
        chosen = list(scored)
        for label, films in sorted(by_label.items()):
            cap = own.counts.get(label, len(films))
            chosen += list(patient_round_robin(films, random.Random(f"{cfg.seed}:{NAME}:{label}")))[:cap]
        if absent:
            rejected.append(Rejection(NAME, f"{absent} rows", "", "not_downloaded",
                                      f"{absent:,} label rows name films in parts not downloaded "
                                      f"(download.archives.{NAME}.parts)"))
        codes = {code: sum(r.code == code for r in rejected) for code in ("age", "finding", "view")}
        taken = {label: sum(c.label == label for c in chosen) for label in by_label}
        print(f"{NAME}: " + ", ".join(f"{n} {label} films chosen of {len(by_label[label])}" for label, n in
                                      taken.items()) + f", {len(scored)} films to score only; rejected: "
              f"{codes['age']} for age, {codes['finding']} for findings, {codes['view']} for view; {absent:,} label "
              "rows are in parts not downloaded")
        return chosen, rejected

    def write_synthetic(self, path: Path, cfg: SyntheticParams, classes: list[str],
                        parts: Sequence[Path] = ()) -> None:
        write_twin(path, list(parts), cfg, classes)


SOURCE = NihSource()

# The synthetic twin ---------------------------------------------------------------------------------

HEADER = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
          "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]


def write_twin(label_file: Path, parts: list[Path], cfg: SyntheticParams, classes: list[str]) -> None:
    """The label file (gzipped, its real 11-field header) and each part as a tar.gz of ``images/<index>``, with
    this hospital's own look: per part adult normal films (some patients with two), adult pneumonias (alone or
    with other findings), and the rows merge must turn down: children, another finding, a film in no part."""
    rng = np.random.default_rng([cfg.seed, 4])
    rows: list[list[str]] = []
    patient = 0

    def row(finding: str, age: int, follow_up: int = 0) -> list[str]:
        view = str(rng.choice(["PA", "AP"]))
        return [f"{patient:08d}_{follow_up:03d}.png", finding, str(follow_up), str(patient), str(age),
                str(rng.choice(["M", "F"])), view, "2500", "2048", "0.143", "0.143"]

    for part in parts:
        films: dict[str, bytes] = {}

        def film(finding: str, drawn: str, age: int, follow_ups: int = 1, films: dict[str, bytes] = films) -> None:
            nonlocal patient
            patient += 1
            for k in range(follow_ups):
                rows.append(row(finding, age, k))
                gray = clinic_look(draw_xray(rng, drawn if drawn in classes else "", cfg.image_size), rng)
                films[rows[-1][0]] = encode(gray, "PNG")

        for k in range(cfg.images_per_class):
            film("No Finding", "normal", int(rng.integers(20, 85)), 2 if k % 5 == 0 else 1)
        for k in range(max(2, cfg.images_per_class // 3)):
            drawn = "pneumonia_bacterial" if k % 2 else "pneumonia_viral"
            film("Pneumonia" if k % 3 else "Infiltration|Pneumonia", drawn, int(rng.integers(25, 80)))
        film("No Finding", "normal", 12)  # a child: rejected for age
        film("Effusion", "normal", 60)  # a finding that maps to no class
        write_part(part, films)
    for _ in range(3):  # films of parts not downloaded
        patient += 1
        rows.append(row("No Finding", 40))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    label_file.write_bytes(gzip.compress(text.getvalue().encode(), mtime=0))


def write_part(path: Path, films: dict[str, bytes]) -> None:
    """A part as NIH's: ``images/`` then its films, gzipped, deterministic (fixed times, owner and gzip header)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo("images")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name, data in films.items():
            info = tarfile.TarInfo(f"images/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
