"""Data tier: both metadata schemas of the COVID collection and every Kermany file-name form."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from conftest import REFERENCE, params_with
from coronet.data import sources
from coronet.data.sources import MetadataError, actualmed, covid, kermany
from coronet.errors import ParamsError
from coronet.params import MergeParams


def cfg(role: str = "off") -> MergeParams:
    return MergeParams.parse(params_with({"merge.controls.role": role}))

OLDEST = """Patientid,offset,sex,age,finding,survival,view,date,location,folder,filename,doi, url,license,clinical notes,other notes
2,0,M,65,COVID-19,Y,PA,2020,Vietnam,images,a.jpg,doi, http://x,,note,
3,1,F,50,SARS,,PA,2004,Toronto,images,b.jpg,doi, http://x,,,
4,2,F,40,COVID-19,,Axial,2020,Wuhan,volumes,c.nii.gz,doi, http://x,,,
5,3,M,33,"COVID-19, ARDS",,AP Supine,2020,Italy,images,d.png,doi, http://x,CC BY,,
"""
NEWEST = """patientid,offset,sex,age,finding,RT_PCR_positive,view,modality,date,folder,filename,license,clinical_notes,
2,0,M,65,Pneumonia/Viral/COVID-19,Y,PA,X-ray,2020,images,a.jpg,,x,
3,4,M,74,Pneumonia/Viral/SARS,,AP,X-ray,2004,images,b.jpg,,x,
6,0,F,30,Pneumonia/Viral/COVID-19,Y,L,X-ray,2020,images,e.jpg,,x,
7,0,F,31,Pneumonia/Viral/COVID-19,Y,Axial,CT,2020,images,f.jpg,,x,
8,0,F,32,Pneumonia/Viral/COVID-19,Y,AP,X-ray,2020,images,missing.jpg,,x,
"""


def archive_with(tmp_path: Path, metadata: str, images: list[str]) -> Path:
    path = tmp_path / "covid.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("repo-abc/metadata.csv", metadata)
        for name in images:
            z.writestr(f"repo-abc/{name}", b"x")
    return path


def test_oldest_schema_headers_and_flat_findings(tmp_path):
    frame = covid.read_metadata(OLDEST)
    assert {"patientid", "url", "clinical notes", "modality"} <= set(frame.columns)
    path = archive_with(tmp_path, OLDEST, ["images/a.jpg", "images/b.jpg", "images/d.png"])
    chosen, rejected = covid.SOURCE.candidates(path, cfg())
    assert [c.original_path for c in chosen] == ["repo-abc/images/a.jpg", "repo-abc/images/d.png"]
    assert chosen[0].patient_id == "covid:2" and chosen[0].age == "65" and chosen[1].licence == "CC BY"
    assert {r.code for r in rejected} == {"finding", "modality"}  # SARS; the CT volume (no modality column)


def test_newest_schema_hierarchical_findings_and_trailing_comma(tmp_path):
    path = archive_with(tmp_path, NEWEST, ["images/a.jpg", "images/b.jpg", "images/e.jpg", "images/f.jpg"])
    chosen, rejected = covid.SOURCE.candidates(path, cfg())
    assert [c.patient_id for c in chosen] == ["covid:2"]
    reasons = {r.row: r.code for r in rejected}
    assert reasons == {"3": "finding", "4": "view", "5": "modality", "6": "missing_file"}


CONTROLS_FLAT = """patientid,finding,view,modality,folder,filename
1,Streptococcus,PA,X-ray,images,1.jpg
2,SARS,AP,X-ray,images,2.jpg
3,No Finding,PA,X-ray,images,3.jpg
4,Pneumocystis,PA,X-ray,images,4.jpg
5,todo,PA,X-ray,images,5.jpg
6,"COVID-19, ARDS",PA,X-ray,images,6.jpg
7,Mycoplasma Bacterial Pneumonia,PA,X-ray,images,7.jpg
8,"Streptococcus, Influenza",PA,X-ray,images,8.jpg
"""
CONTROLS_HIERARCHICAL = """patientid,finding,view,modality,folder,filename,
1,Pneumonia/Bacterial/Streptococcus,PA,X-ray,images,1.jpg,
2,Pneumonia/Viral/SARS,AP,X-ray,images,2.jpg,
3,No Finding,PA,X-ray,images,3.jpg,
4,Pneumonia/Fungal/Pneumocystis,PA,X-ray,images,4.jpg,
5,todo,PA,X-ray,images,5.jpg,
6,Pneumonia/Viral/COVID-19,PA,X-ray,images,6.jpg,
7,Pneumonia/Bacterial/Nocardia,PA,X-ray,images,7.jpg,
8,Pneumonia/Viral/Herpes,L,X-ray,images,8.jpg,
"""


@pytest.mark.parametrize(("metadata", "expected"), [
    (CONTROLS_FLAT, {"1": "pneumonia_bacterial", "2": "pneumonia_viral", "3": "normal", "4": "", "7":
                     "pneumonia_bacterial", "8": ""}),
    (CONTROLS_HIERARCHICAL, {"1": "pneumonia_bacterial", "2": "pneumonia_viral", "3": "normal", "4": "",
                             "7": "pneumonia_bacterial"}),
])
def test_same_source_controls_in_both_metadata_eras(tmp_path, metadata, expected):
    """The collection's other findings become controls with the class params map them to (flat
    names and any part of a hierarchical one), none for fungal ones or mixed findings; `todo` is rejected."""
    path = archive_with(tmp_path, metadata, [f"images/{k}.jpg" for k in range(1, 9)])
    chosen, rejected = covid.SOURCE.candidates(path, cfg("evaluate"))
    controls = {c.patient_id.removeprefix("covid:"): c.label for c in chosen if c.cohort == "control"}
    assert controls == expected
    assert [(c.patient_id, c.label, c.cohort) for c in chosen if c.cohort == "pool"] == [("covid:6", "covid", "pool")]
    reasons = {r.row: (r.code, r.reason) for r in rejected}
    assert reasons["6"][0] == "finding" and "not a diagnosis" in reasons["6"][1]  # todo (CSV line 6)
    if metadata is CONTROLS_HIERARCHICAL:
        assert reasons["9"][0] == "view"  # a lateral control is turned down like a lateral COVID-19 film
    off, rejected_off = covid.SOURCE.candidates(path, cfg("off"))
    assert all(c.cohort == "pool" for c in off) and sum(r.code == "finding" for r in rejected_off) >= 6


def test_the_registry_finds_every_source_module():
    found = sources.registered()
    folder = Path(sources.__file__).parent  # every module file but the package's own and the shared base
    assert set(found) == {f.stem for f in folder.glob("*.py")} - {"__init__", "base"}
    assert found["kermany"].cohort_ages == "1-5 by provenance"
    with pytest.raises(ParamsError, match=r"download\.archives names source 'toy', but no module"):
        sources.get("toy")


def test_missing_columns_are_named():
    with pytest.raises(MetadataError, match="filename"):
        covid.read_metadata("patientid,finding,view\n1,COVID-19,PA\n")


@pytest.mark.skipif(not (REFERENCE / "covid-chestxray-dataset").is_dir(), reason="../shared/reference not present")
def test_real_metadata_both_eras():
    for name in ("metadata-2020-04-17.csv", "metadata-newest-sample.csv"):
        text = (REFERENCE / "covid-chestxray-dataset" / name).read_text()
        frame = covid.read_metadata(text)
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(frame) == len(rows)
        expected = sum(1 for r in rows if "COVID-19" in r["finding"] and r["modality"] == "X-ray"
                       and r["view"] in {"PA", "AP", "AP Supine"})
        selected = frame[frame["finding"].str.contains("COVID-19") & frame.apply(covid.is_xray, axis=1)
                         & frame["view"].isin(["PA", "AP", "AP Supine"])]
        assert len(selected) == expected > 0


@pytest.mark.parametrize(
    ("folder", "name", "label", "patient"),
    [
        ("PNEUMONIA", "person1_bacteria_1.jpeg", "pneumonia_bacterial", "kermany:person1"),
        ("PNEUMONIA", "person1_virus_6.jpeg", "pneumonia_viral", "kermany:person1"),
        ("PNEUMONIA", "person1544_bacteria_4038.jpeg", "pneumonia_bacterial", "kermany:person1544"),
        ("PNEUMONIA", "person447_virus_921_1.jpeg", "pneumonia_viral", "kermany:person447"),
        ("NORMAL", "IM-0115-0001.jpeg", "normal", "kermany:IM-0115"),
        ("NORMAL", "NORMAL2-IM-1302-0001.jpeg", "normal", "kermany:NORMAL2-IM-1302"),
    ],
)
def test_kermany_name_forms(folder, name, label, patient):
    assert kermany.parse_name(folder, name) == (label, patient)


@pytest.mark.parametrize(("folder", "name"), [("NORMAL", "person3_virus_1.jpeg"), ("PNEUMONIA", "IM-0001-0001.jpeg"),
                                              ("NORMAL", "readme.txt")])
def test_kermany_names_that_do_not_fit_are_refused(folder, name):
    with pytest.raises(ValueError):
        kermany.parse_name(folder, name)


def test_kermany_archive_pool_ignores_macos_junk(tmp_path):
    path = tmp_path / "k.zip"
    with zipfile.ZipFile(path, "w") as z:
        for name in ["chest_xray/train/NORMAL/IM-0001-0001.jpeg", "chest_xray/test/PNEUMONIA/person2_virus_3.jpeg",
                     "__MACOSX/chest_xray/train/NORMAL/._IM-0001-0001.jpeg", "chest_xray/.DS_Store",
                     "chest_xray/train/NORMAL/._IM-0002-0001.jpeg", "chest_xray/README.txt"]:
            z.writestr(name, b"x")
    chosen, rejected = kermany.SOURCE.candidates(path, cfg())
    assert sorted(c.label for c in chosen) == ["normal", "pneumonia_viral"]
    assert [r.path for r in rejected] == ["chest_xray/README.txt"]


@pytest.mark.skipif(not (REFERENCE / "kermany").is_dir(), reason="../shared/reference not present")
def test_real_kermany_train_names():
    names = (REFERENCE / "kermany" / "train-filenames.txt").read_text().split()
    parsed = [kermany.parse_name(*n.split("/")) for n in names]
    assert len(parsed) == 5216
    labels = [p[0] for p in parsed]
    # Real names include forms such as person447_virus_921_1.jpeg; every one must parse.
    assert labels.count("normal") == sum(n.startswith("NORMAL/") for n in names)
    both = {p for lab, p in parsed if lab == "pneumonia_bacterial"} & {p for lab, p in parsed if lab == "pneumonia_viral"}
    assert len(both) == 808  # persons with both bacterial and viral images, as measured upstream


ACTUALMED = REFERENCE / "actualmed-mini" / "Actualmed-COVID-chestxray-dataset.zip"


@pytest.mark.skipif(not ACTUALMED.is_file(), reason="../shared/reference/actualmed-mini is not here")
def test_the_real_actualmed_archive_is_read_as_its_metadata_says():
    """The real layout (imagename, no folder): every row is a candidate or a rejection with its reason; an
    empty finding is inconclusive; counts worked out from metadata.csv and the archive's listing directly."""
    with zipfile.ZipFile(ACTUALMED) as z:
        meta = next(n for n in z.namelist() if n.endswith("/metadata.csv"))
        rows = list(csv.DictReader(io.StringIO(z.read(meta).decode())))
        files = {Path(n).name for n in z.namelist() if "/images/" in n and not n.endswith("/")}
    found, rejected = actualmed.SOURCE.candidates(ACTUALMED, MergeParams.parse(params_with()))
    assert len(found) + len(rejected) == len(rows) == 238
    present = [r for r in rows if r["imagename"] in files and r["finding"] in ("COVID-19", "No finding")]
    assert sorted(c.original_path.rsplit("/", 1)[-1] for c in found) == sorted(r["imagename"] for r in present)
    assert {c.label for c in found} == {"covid", "normal"} and all(c.cohort == "pool" for c in found)
    assert all(c.patient_id.startswith("actualmed:ANON") for c in found)
    codes = pd.Series([r.code for r in rejected]).value_counts().to_dict()
    assert codes["inconclusive"] == sum(1 for r in rows if not r["finding"])
    assert codes["missing_file"] == sum(1 for r in rows if r["finding"] and r["imagename"] not in files)


def test_the_actualmed_twin_is_in_the_real_layout_with_a_look_of_its_own(tmp_path):
    from coronet.params import SyntheticParams

    path = tmp_path / "a.zip"
    actualmed.SOURCE.write_synthetic(path, SyntheticParams(3, 8, 96, 0), ["covid", "normal", "x", "y"])
    found, rejected = actualmed.SOURCE.candidates(path, MergeParams.parse(params_with()))
    assert sorted(c.label for c in found) == ["covid"] * 4 + ["normal"] * 4
    assert sorted(r.code for r in rejected) == ["inconclusive", "missing_file"]
    with zipfile.ZipFile(path) as z:
        assert z.namelist()[:3] == [f"{actualmed.ROOT}/", f"{actualmed.ROOT}/README.md", f"{actualmed.ROOT}/metadata.csv"]


@pytest.mark.parametrize(("key", "value", "says"), [
    ("merge.sources.actualmed.role", "test", "merge.sources.actualmed.role must be one of 'train', 'external'"),
    ("merge.sources.actualmed.classes", {"tuberculosis": ["TB"]}, "classes.tuberculosis is not in classes"),
    ("merge.sources.actualmed.classes", {"covid": ["COVID-19"], "normal": ["covid-19"]}, "maps finding 'covid-19' twice"),
])
def test_a_bad_source_role_is_one_error(key, value, says):
    from coronet.params import Section

    params = params_with()
    node = params
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    dict.__setitem__(node, leaf, Section(value, node.path + leaf + ".") if isinstance(value, dict) else value)
    with pytest.raises(ParamsError, match=re.escape(says)):
        MergeParams.parse(params)


def test_a_control_mapped_to_covid_is_one_error(tmp_path):
    """A same-source control mapped to covid was accepted without a word (the controls are
    the collection's films without COVID-19)."""
    from coronet.params import SyntheticParams

    path = tmp_path / "c.zip"
    covid.SOURCE.write_synthetic(path, SyntheticParams(1, 2, 64, 1), ["covid", "normal", "pneumonia_bacterial",
                                                                      "pneumonia_viral"])
    params = params_with({"merge.controls.classes.covid": ["Pneumocystis"]})
    with pytest.raises(ParamsError, match=re.escape("merge.controls.classes maps findings to 'covid': the same-source")):
        covid.SOURCE.candidates(path, MergeParams.parse(params))


def test_a_class_the_twins_cannot_draw_is_one_error_not_clear_lungs():
    """The phantom drew clear lungs, silently, for a class it had no finding for."""
    import numpy as np

    from coronet.data.phantom import check_drawable, draw_xray

    check_drawable(["covid", "normal"])
    with pytest.raises(ParamsError, match=re.escape("classes ['tuberculosis'] have no look in the synthetic twins")):
        check_drawable(["covid", "tuberculosis"])
    with pytest.raises(ValueError, match="no finding for class 'tuberculosis'"):
        draw_xray(np.random.default_rng(0), "tuberculosis", 64)
