"""The Actualmed hospital's films (GitHub archive of agchung/Actualmed-COVID-chestxray-dataset): a third
hospital, scored on every run and never trained on by default (params ``merge.sources.actualmed``).

Its metadata.csv names files in ``imagename`` (no ``folder``: every image sits in images/) and findings
``COVID-19`` or ``No finding``; an empty finding is inconclusive (the notes say so) and is rejected with
that reason. Which finding is which class is params (``merge.sources.actualmed.classes``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path, PurePosixPath

import numpy as np

from coronet.data import archives
from coronet.data.phantom import draw_xray, encode, hospital_look, write_zip
from coronet.data.sources.base import Candidate, Rejection, find_metadata, read_metadata_csv
from coronet.params import MergeParams, SyntheticParams

NAME = "actualmed"
REQUIRED = ("patientid", "finding", "view", "imagename")
LICENCE = "research use (the repository's README)"


class ActualmedSource:
    name = NAME
    title = "Actualmed COVID-19 chest X-rays (one Spanish hospital's films; adults; COVID-19 and no finding)"
    licence = LICENCE
    cohort_ages = "adults by provenance"  # the age column is mostly blank
    caveats = ("its findings are COVID-19 or none: it can test the COVID-19 answer, not the pneumonias",)
    maps_findings = True  # merge.sources.actualmed.classes

    def candidates(self, archive: Path, cfg: MergeParams) -> tuple[list[Candidate], list[Rejection]]:
        """Rows with a finding params map to a class, of the chosen views, whose file is in the archive."""
        names = archives.names(archive)
        meta_name = find_metadata(names, "Actualmed")
        with archives.ArchiveReader() as reader:
            frame = read_metadata_csv(reader.read(archive, meta_name), REQUIRED, "Actualmed",
                                      f"download.archives.{NAME}.url")
        root, members = PurePosixPath(meta_name).parent, set(names)
        findings, views = cfg.source(NAME).classes, {v.strip().lower() for v in cfg.views}
        chosen: list[Candidate] = []
        rejected: list[Rejection] = []
        for index, row in frame.iterrows():
            member, line = str(root / "images" / row["imagename"]), str(int(index) + 2)
            label = findings.get(row["finding"].lower(), "")

            def reject(code: str, reason: str, known: str = "", member: str = member, line: str = line) -> None:
                rejected.append(Rejection(NAME, line, member, code, reason, known))

            if not row["finding"]:
                reject("inconclusive", f"no finding recorded ({row.get('notes', '') or 'no notes'}): no label")
            elif not label:
                reject("finding", f"finding {row['finding']!r} is not mapped to a class "
                                  f"(merge.sources.{NAME}.classes)")
            elif row["view"].lower() not in views:
                reject("view", f"view {row['view']!r} is not one of {list(cfg.views)}", label)
            elif not row["imagename"] or member not in members:
                reject("missing_file", f"image {member!r} named in metadata is not in the archive", label)
            else:
                chosen.append(Candidate(label=label, source=NAME, patient_id=f"{NAME}:{row['patientid']}",
                                        view=row["view"], age=row.get("age", ""), sex=row.get("sex", ""),
                                        licence=LICENCE, archive=str(archive), original_path=member,
                                        finding=row["finding"]))
        return chosen, rejected

    def write_synthetic(self, path: Path, cfg: SyntheticParams, classes: list[str]) -> None:
        write_archive(path, cfg, classes)


SOURCE = ActualmedSource()

# The synthetic twin ---------------------------------------------------------------------------------

COMMIT = "27240dd8dec9454bc97f9f3c0c432ef434de2517"
ROOT = f"Actualmed-COVID-chestxray-dataset-{COMMIT}"
HEADER = ["patientid", "offset", "sex", "age", "finding", "survival", "temperature", "pO2 saturation", "view",
          "modality", "imagename", "artifacts/distortion", "notes"]
FINDINGS = {"COVID-19": "covid", "No finding": "normal"}  # the real metadata's; params map them to classes


def write_archive(path: Path, cfg: SyntheticParams, classes: list[str]) -> None:
    """The repository's GitHub archive: metadata.csv and images/ (RGB PNGs named by their CR UID), half the
    twins' class size per finding, with this hospital's own look; and the rows merge must turn down: an
    inconclusive film, a metadata row whose file is missing."""
    rng = np.random.default_rng([cfg.seed, 3])
    per_finding = max(2, cfg.images_per_class // 2)
    rows: list[dict[str, str]] = []
    files: dict[str, bytes] = {}
    uid = 20200313090000000000

    def add(patient: str, finding: str, drawn: str, keep: bool = True, notes: str = "") -> None:
        nonlocal uid
        uid += int(rng.integers(1, 10**6))
        name = f"CR.1.2.840.113564.1722810170.{uid}.1003000225002.png"
        row = dict.fromkeys(HEADER, "")
        row.update(patientid=patient, finding=finding, view=str(rng.choice(["PA", "PA", "AP"])), modality="X-ray",
                   imagename=name, notes=notes)
        rows.append(row)
        if keep:
            gray = hospital_look(draw_xray(rng, drawn if drawn in classes else "", cfg.image_size), rng)
            files[name] = encode(gray, "PNG", "RGB", (int(cfg.image_size * 1.2), cfg.image_size))

    patient = 0
    for finding, drawn in FINDINGS.items():
        for _ in range(per_finding):
            patient += 1
            add(f"ANON{patient}", finding, drawn, notes="date taken (YYYYMMDD): 20200320")
    add("ANON900", "", "normal", notes="Inconclusive, date taken (YYYYMMDD): 20200313")
    add("ANON901", "COVID-19", "covid", keep=False)  # a partial copy's missing file
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=HEADER, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    entries = [(f"{ROOT}/", b""), (f"{ROOT}/README.md", b"# synthetic Actualmed-COVID-chestxray-dataset\n"),
               (f"{ROOT}/metadata.csv", text.getvalue().encode())]
    entries += [(f"{ROOT}/images/{name}", data) for name, data in sorted(files.items())]
    write_zip(path, entries)
