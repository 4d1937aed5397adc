"""Cohen et al.'s covid-chestxray-dataset (GitHub archive): metadata.csv of any era plus images/.

Rows whose finding contains COVID-19 are the covid class. The collection's X-rays of other findings
(bacterial, viral and fungal pneumonias, "No Finding") look like its COVID-19 images (figures from
papers, adults) without COVID-19: the same-source controls (params ``merge.controls``), each with the
class its finding maps to, or none.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from coronet.data import archives
from coronet.data.phantom import draw_xray, encode, publication_look, write_zip
from coronet.data.sources.base import Candidate, Rejection, find_metadata, read_metadata_csv
from coronet.errors import ParamsError
from coronet.params import ControlParams, MergeParams, SyntheticParams

REQUIRED = ("patientid", "finding", "view", "filename")
LABEL = "covid"  # the class of the rows whose finding contains merge.covid_finding


def read_metadata(data: bytes | str) -> pd.DataFrame:
    """metadata.csv of any upstream era, with harmonised column names.

    Old headers differ (``Patientid``, `` url``), the newest rows end in a trailing comma (an empty
    column) and the oldest have no ``modality`` column: all are read alike here.
    """
    frame = read_metadata_csv(data, REQUIRED, "COVID-19", "download.archives.covid.url")
    for optional in ("modality", "folder", "age", "sex", "license"):
        if optional not in frame.columns:
            frame[optional] = ""
    return frame


def is_xray(row: pd.Series) -> bool:
    if row["modality"]:
        return row["modality"].lower().replace("-", "") == "xray"
    return row["folder"] != "volumes"  # the oldest metadata: CT volumes sit in volumes/


def finding_parts(finding: str) -> list[list[str]]:
    """Each listed finding's parts, most specific first, lower case: ``Pneumonia/Bacterial/Streptococcus``
    -> [[streptococcus, bacterial, pneumonia]]; the flat ``COVID-19, ARDS`` -> [[covid-19], [ards]]."""
    return [[p.strip().lower() for p in reversed(item.split("/")) if p.strip()]
            for item in re.split(r"[,;]", finding) if item.strip()]


def control_class(finding: str, cfg: ControlParams) -> tuple[str, str]:
    """(class, "") for a non-COVID finding: the class of its most specific mapped part ("" for none, or
    when its listed findings map to different classes); ("", reason) when params reject it."""
    parts = finding_parts(finding)
    if not parts:
        return "", "no finding recorded"
    if rejected := next((p for item in parts for p in item if p in cfg.reject), None):
        return "", f"finding {finding!r} is not a diagnosis ({rejected!r} is in merge.controls.reject)"
    mapped = {next((cfg.classes[p] for p in item if p in cfg.classes), "") for item in parts}
    return (mapped.pop() if len(mapped) == 1 else ""), ""


class CovidSource:
    name = "covid"
    title = ("Cohen et al. covid-chestxray-dataset (COVID-19 and other findings; adults; figures from papers; "
             "per-image licences)")
    licence = "per image (the license column; metadata CC BY-NC-SA 4.0)"
    cohort_ages = ""  # each row has its age
    caveats = ("its COVID-19 images are figures from publications (cropped, annotated, re-encoded), not "
               "hospital DICOMs",)
    maps_findings = False  # its labels: metadata findings against merge.covid_finding and merge.controls

    def candidates(self, archive: Path, cfg: MergeParams) -> tuple[list[Candidate], list[Rejection]]:
        """X-ray rows of the chosen views: COVID-19 rows as the covid class, the rest as same-source
        controls (or rejected, with params merge.controls.role off)."""
        if LABEL in cfg.controls.classes.values():
            raise ParamsError(f"params.yaml: merge.controls.classes maps findings to {LABEL!r}: the same-source "
                              f"controls are the collection's films without {cfg.covid_finding}; map them to other "
                              "classes")
        names = archives.names(archive)
        meta_name = find_metadata(names, "COVID-19")
        with archives.ArchiveReader() as reader:
            frame = read_metadata(reader.read(archive, meta_name))
        root = PurePosixPath(meta_name).parent
        members = set(names)
        chosen: list[Candidate] = []
        rejected: list[Rejection] = []
        wanted_views = {v.strip().lower() for v in cfg.views}
        covid = cfg.covid_finding.lower()
        for index, row in frame.iterrows():
            folder = row["folder"] or "images"
            member = str(root / folder / row["filename"])
            line = str(int(index) + 2)  # the CSV line number, header being line 1
            is_covid = covid in row["finding"].lower()
            label, cohort, why = (LABEL, "pool", "") if is_covid else ("", "control", "")
            if not is_covid:
                if cfg.controls.role == "off":
                    why = f"finding {row['finding']!r} does not contain {cfg.covid_finding!r} (merge.controls.role off)"
                else:
                    label, why = control_class(row["finding"], cfg.controls)
            # Rows turned down past the finding test are images their class could have had.
            known = label if not why else ""
            if why:
                rejected.append(Rejection(self.name, line, member, "finding", why))
            elif not is_xray(row):
                rejected.append(Rejection(self.name, line, member, "modality",
                                          f"modality {row['modality'] or folder!r} is not an X-ray", known))
            elif row["view"].lower() not in wanted_views:
                rejected.append(Rejection(self.name, line, member, "view",
                                          f"view {row['view']!r} is not one of {list(cfg.views)}", known))
            elif not row["filename"] or member not in members:
                rejected.append(Rejection(self.name, line, member, "missing_file",
                                          f"image {member!r} named in metadata is not in the archive", known))
            else:
                chosen.append(Candidate(
                    label=label, source=self.name, patient_id=f"{self.name}:{row['patientid']}", view=row["view"],
                    age=row["age"], sex=row["sex"], licence=row["license"] or "unspecified (see the source article)",
                    archive=str(archive), original_path=member, finding=row["finding"], cohort=cohort))
        return chosen, rejected

    def write_synthetic(self, path: Path, cfg: SyntheticParams, classes: list[str]) -> None:
        write_archive(path, cfg, classes)


SOURCE = CovidSource()

# The synthetic twin ---------------------------------------------------------------------------------

COMMIT = "6a4242344473ccb5ed0d2148d8c7bfb1691e4ed8"
ROOT = f"covid-chestxray-dataset-{COMMIT}"
# The newest upstream header, trailing empty column included.
HEADER = [
    "patientid", "offset", "sex", "age", "finding", "RT_PCR_positive", "survival", "intubated",
    "intubation_present", "went_icu", "in_icu", "needed_supplemental_O2", "extubated", "temperature",
    "pO2_saturation", "leukocyte_count", "neutrophil_count", "lymphocyte_count", "view", "modality", "date",
    "location", "folder", "filename", "doi", "url", "license", "clinical_notes", "other_notes", "",
]
LICENCES = ["CC BY", "CC BY-NC-SA", "Apache 2.0", ""]
# Same-source controls of the twin: finding (the newest, hierarchical metadata) -> the class drawn.
CONTROL_FINDINGS = {
    "Pneumonia/Bacterial/Streptococcus": "pneumonia_bacterial",
    "Pneumonia/Viral/SARS": "pneumonia_viral",
    "No Finding": "normal",
    "Pneumonia/Fungal/Pneumocystis": "normal",  # no class of ours: drawn without a finding
}


def write_archive(path: Path, cfg: SyntheticParams, classes: list[str]) -> None:
    """A GitHub archive of the covid-chestxray-dataset: metadata.csv and images/. Its films have the
    publication look (frames, burned-in labels) the real collection has, COVID-19 and controls alike."""
    rng = np.random.default_rng([cfg.seed, 1])
    size = cfg.image_size
    rows: list[dict[str, str]] = []
    files: dict[str, bytes] = {}

    def add(patient: str, filename: str, data: bytes | None, **fields: str) -> None:
        row = dict.fromkeys(HEADER, "")
        row.update(patientid=patient, filename=filename, folder="images", modality="X-ray", view="PA")
        row.update(finding="Pneumonia/Viral/COVID-19", sex=str(rng.choice(["M", "F"])))
        row.update(age=str(int(rng.integers(25, 85))), license=str(rng.choice(LICENCES)), **fields)
        rows.append(row)
        if data is not None:
            files[filename] = data

    def film(label: str) -> np.ndarray:
        return publication_look(draw_xray(rng, label if label in classes else "", size), rng)

    made, patient = 0, 100
    while made < cfg.images_per_class:
        patient += 1
        for day in range(min(int(rng.integers(1, 4)), cfg.images_per_class - made)):
            w, h = (int(size * rng.uniform(0.8, 1.3)) for _ in range(2))
            gray = film("covid")
            kind = made % 9
            if kind == 3:  # a PNG named .jpg, as 18 real files are
                name, data = f"covid-{patient}-day{day}.jpg", encode(gray, "PNG", "L", (w, h))
            elif kind == 5:
                name, data = f"covid-{patient}-day{day}.png", encode(gray, "PNG", "RGBA", (w, h))
            elif kind == 7:
                name, data = f"covid-{patient}-day{day}.png", encode(gray, "PNG", "P", (w, h))
            else:
                name, data = f"covid-{patient}-day{day}.jpeg", encode(gray, "JPEG", "RGB", (w, h))
            add(str(patient), name, data, view=str(rng.choice(["PA", "AP", "AP Supine"])), offset=str(day))
            made += 1
    for k, (finding, drawn) in enumerate(sorted(CONTROL_FINDINGS.items())):
        for j in range(cfg.controls_per_finding):
            name = f"control-{k}-{j}.jpeg"
            add(str(700 + 10 * k + j), name, encode(film(drawn), "JPEG", "RGB"), finding=finding)
    # Rows the merge stage must turn down, each for its own reason.
    add("900", "todo-900.jpeg", encode(film("normal"), "JPEG", "RGB"), finding="todo")
    add("901", "covid-901-lateral.jpeg", encode(film("covid"), "JPEG", "RGB"), view="L")
    add("902", "covid-902-ct.jpeg", None, modality="CT", view="Axial", folder="volumes")
    add("903", "covid-903-missing.jpeg", None)
    add("904", "covid-904-corrupt.jpeg", b"")
    add("905", "covid-905-copy.jpeg", files[rows[0]["filename"]])  # the same bytes as the first image
    files["unreferenced-extra.png"] = encode(draw_xray(rng, "normal", size), "PNG")

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=HEADER, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    entries = [(f"{ROOT}/", b""), (f"{ROOT}/README.md", b"# synthetic covid-chestxray-dataset\n")]
    entries.append((f"{ROOT}/metadata.csv", text.getvalue().encode()))
    entries += [(f"{ROOT}/images/{name}", data) for name, data in sorted(files.items())]
    write_zip(path, entries)
