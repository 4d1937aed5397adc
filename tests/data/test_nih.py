"""Data tier: NIH ChestX-ray14 as a source of several files: its real label file read in full, its twin through
download and merge, a part read once, and every way a part or label file can be wrong is one clear line."""

from __future__ import annotations

import csv
import gzip
import io
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from conftest import REFERENCE, TINY, make_project, set_params, user_error
from coronet.data import archives
from coronet.data.sources import nih

NIH_MINI = REFERENCE / "nih-mini"
ON = {**TINY, "download.archives.nih.enabled": True, "merge.sources.nih.counts.normal": 5}


@pytest.mark.skipif(not NIH_MINI.is_dir(), reason="../shared/reference/nih-mini is absent")
def test_the_real_label_file_is_read_in_full_as_it_is():
    """All 112,120 rows; its header's two names that hold a comma split it into 11 fields. The counts per finding
    and per age band are worked out here from the file with the csv module, not by the reader."""
    path = NIH_MINI / "Data_Entry_2017_v2020.csv.gz"
    with gzip.open(path, "rt", newline="") as f:
        header, *rows = list(csv.reader(f))
    assert len(header) == 11 and "OriginalImage[Width" in header and "Height]" in header
    column = {name: k for k, name in enumerate(header)}
    findings = Counter(f for row in rows for f in row[column["Finding Labels"]].split("|"))
    bands = Counter("child" if int(row[column["Patient Age"]]) < 18 else "adult" for row in rows)

    frame = nih.read_labels(path)
    assert len(frame) == len(rows) == 112_120
    assert Counter(f for labels in frame["finding_labels"] for f in labels.split("|")) == findings
    ages = [nih.age_in_years(a) for a in frame["patient_age"]]
    assert None not in ages and Counter("child" if a < 18 else "adult" for a in ages) == bands
    assert findings["No Finding"] > 60_000 and bands["child"] > 0  # children are in it: min_age matters


def stage_run(project: Path, name: str, stage):
    result = stage(project, name)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture
def twin(tmp_path, stage):
    """The NIH twin (a label file and one part) downloaded and merged with the other twins."""
    project = make_project(tmp_path / "repo", ON)
    stage_run(project, "download", stage)
    return project, stage_run(project, "merge", stage)


def test_the_twin_goes_through_download_and_merge_as_the_real_source_would(twin):
    project, merged = twin
    part = project / "data/raw/archives/images_001.tar.gz"
    listed = archives.member_list(part).read_text().splitlines()
    with tarfile.open(part) as tar:
        assert listed == [m.name for m in tar.getmembers() if m.isfile()]  # the part's own listing
    labels = nih.read_labels(project / "data/raw/archives/Data_Entry_2017_v2020.csv.gz")
    in_part = labels[labels["image_index"].isin({Path(n).name for n in listed})]
    adults = in_part["patient_age"].astype(int) >= 18
    normal = in_part[adults & (in_part["finding_labels"] == "No Finding")]
    pneumonia = in_part[adults & in_part["finding_labels"].str.split("|").apply(lambda f: "Pneumonia" in f)]

    manifest = pd.read_csv(project / "data/interim/manifest.csv", keep_default_na=False)
    ours = manifest[manifest["source"] == "nih"]
    pool, scored = ours[ours["cohort"] == "pool"], ours[ours["cohort"] == "scored"]
    assert set(pool["label"]) == {"normal"} and len(pool) == ON["merge.sources.nih.counts.normal"]
    assert set(pool["original_path"].str.rsplit("/", n=1).str[-1]) <= set(normal["image_index"])
    assert pool["patient_id"].nunique() == len(pool)  # chosen across patients: one film each while patients last
    assert set(scored["original_path"].str.rsplit("/", n=1).str[-1]) == set(pneumonia["image_index"])
    assert set(scored["group"]) == {"pneumonia"} and (scored["label"] == "").all()
    assert ours["patient_id"].str.startswith("nih:").all()
    assert set(ours["archive"]) == {"data/interim/extracted.zip"}
    with zipfile.ZipFile(project / "data/interim/extracted.zip") as z:  # only what was chosen was copied out
        assert len(z.namelist()) == len(pool) + len(scored)

    rejected = pd.read_csv(project / "data/interim/rejected.csv", keep_default_na=False)
    mine = rejected[rejected["source"] == "nih"]
    absent = len(labels) - len(in_part)
    assert mine["code"].value_counts().to_dict() == {"not_downloaded": 1, "age": 1, "finding": 1}
    assert mine.loc[mine["code"] == "not_downloaded", "row"].item() == f"{absent} rows"  # one line, not one each
    assert f"{absent:,} label rows are in parts not downloaded" in merged.stdout
    assert "1 for age" in merged.stdout and f"{len(pool)} normal films chosen of {len(normal)}" in merged.stdout


def test_a_part_is_read_once_whatever_number_of_films_are_chosen(tmp_path, monkeypatch):
    from conftest import encoded, noise
    from coronet.data.manifest import extract_chosen
    from coronet.data.sources.base import Candidate

    parts = []
    for k in (1, 2):
        parts.append(tmp_path / f"images_00{k}.tar.gz")
        nih.write_part(parts[-1], {f"{k}_{n}.png": encoded(noise(seed=10 * k + n)) for n in range(6)})
    passes = []
    real = archives._tar_stream
    monkeypatch.setattr(archives, "_tar_stream", lambda path: passes.append(path.name) or real(path))
    pool = [Candidate("normal", "nih", f"nih:{k}", "PA", "40", "M", "", str(part), f"images/{k + 1}_{n}.png")
            for k, part in enumerate(parts) for n in (0, 2, 4)]
    moved = extract_chosen(pool, tmp_path / "extracted.zip")
    assert sorted(passes) == ["images_001.tar.gz", "images_002.tar.gz"]  # one pass per part, not per film
    with zipfile.ZipFile(tmp_path / "extracted.zip") as z:
        assert sorted(z.namelist()) == sorted(c.original_path for c in moved)
        for candidate in moved:
            part, member = candidate.original_path.split("/", 1)
            with tarfile.open(tmp_path / part) as tar:
                assert z.read(candidate.original_path) == tar.extractfile(member).read()


def rewrite_part(part: Path, change) -> None:
    data = gzip.decompress(part.read_bytes())
    part.write_bytes(change(data))


@pytest.mark.parametrize(("damage", "says"), [
    ("truncated", "images_001.tar.gz is not a complete tar.gz part (truncated or damaged)"),
    ("corrupt", "images_001.tar.gz is not a complete tar.gz part (truncated or damaged)"),
])
def test_a_truncated_or_corrupt_part_is_one_line_naming_it_and_leaves_nothing(tmp_path, stage, damage, says):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    from conftest import write_twins

    write_twins(mirror, seed=3, images_per_class=4, size=64)
    part = mirror / "images_001.tar.gz"
    nih.write_twin(mirror / "Data_Entry_2017_v2020.csv.gz", [part], _syn(), list(TINY_CLASSES))
    whole = part.read_bytes()
    if damage == "truncated":
        part.write_bytes(whole[: len(whole) * 2 // 3])
    else:
        middle = len(whole) // 2
        part.write_bytes(whole[:middle] + bytes(b ^ 0xFF for b in whole[middle : middle + 64]) + whole[middle + 64 :])
    project = make_project(tmp_path / "repo", {"download.mirror": mirror.as_uri(), "download.source": "upstream",
                                               "download.archives.nih.enabled": True,
                                               "download.archives.nih.sha256": ""})
    line = user_error(stage(project, "download"))
    assert says in line
    assert not (project / "data/raw/archives/images_001.tar.gz").exists()
    assert not list((project / "data/raw/.downloads").glob("*images_001.tar.gz"))  # the cache dropped it too
    assert not (project / "data/raw/sources.json").exists()


TINY_CLASSES = ("covid", "normal", "pneumonia_bacterial", "pneumonia_viral")


def _syn():
    from coronet.params import SyntheticParams

    return SyntheticParams(3, 4, 64, 1)


def test_a_label_file_of_another_shape_is_one_line(twin, stage):
    project, _ = twin
    labels = project / "data/raw/archives/Data_Entry_2017_v2020.csv.gz"
    text = gzip.decompress(labels.read_bytes()).decode()
    # the 2017 file's ten-field header: "OriginalImage[Width,Height]" written as one quoted name
    labels.write_bytes(gzip.compress(text.replace("OriginalImage[Width,Height]", '"OriginalImage[Width Height]"', 1)
                                     .encode()))
    line = user_error(stage(project, "merge"))
    assert "has 10 header fields, not NIH's 11" in line and "Data_Entry_2017_v2020" in line
    labels.write_bytes(gzip.compress(text.replace("Patient Age", "Age", 1).encode()))
    assert "lacks column(s) ['patient age']" in user_error(stage(project, "merge"))


def test_a_part_holding_a_film_twice_is_said_once_and_the_first_copy_used(tmp_path, stage):
    from conftest import encoded, noise

    part = tmp_path / "images_001.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for payload in (encoded(noise(seed=1)), encoded(noise(seed=2))):
            info = tarfile.TarInfo("images/00000001_000.png")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    part.write_bytes(gzip.compress(buffer.getvalue()))
    names, repeated = archives.list_tar(part, 10**9)
    assert names == repeated == ["images/00000001_000.png"]
    with zipfile.ZipFile(tmp_path / "out.zip", "w") as out:
        assert archives.copy_tar_members(part, set(names), out, "p/") == set(names)
    with zipfile.ZipFile(tmp_path / "out.zip") as z:
        assert z.read("p/images/00000001_000.png") == encoded(noise(seed=1))


def test_a_part_entry_outside_its_folder_or_a_link_is_refused(tmp_path):
    for name, kind in (("../../etc/evil.png", tarfile.REGTYPE), ("images/link.png", tarfile.SYMTYPE)):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "/etc/passwd"
            tar.addfile(info, io.BytesIO(b""))
        part = tmp_path / "images_001.tar.gz"
        part.write_bytes(gzip.compress(buffer.getvalue()))
        with pytest.raises(archives.UnsafeArchiveError, match=r"escape its folder|a link or device"):
            archives.list_tar(part, 10**9)


def test_a_switched_off_source_downloads_nothing_and_its_merge_params_stay_accepted(tmp_path, stage):
    project = make_project(tmp_path / "repo", TINY)  # params.yaml: nih listed, enabled false (the paper's run)
    result = stage_run(project, "download", stage)
    assert "switched off" in result.stdout and "nih" in result.stdout
    assert not list((project / "data/raw/archives").glob("images_*")) and not list(
        (project / "data/raw/archives").glob("Data_Entry*"))
    stage_run(project, "merge", stage)
    manifest = pd.read_csv(project / "data/interim/manifest.csv", keep_default_na=False)
    assert "nih" not in set(manifest["source"])
    set_params(project, {"merge.sources.nihh": {"role": "train"}})
    assert "merge.sources names ['nihh']" in user_error(stage(project, "merge"))
