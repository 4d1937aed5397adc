"""Data tier: what a user gets wrong before training (params, mirrors, archives, metadata, data that
cannot be split) is one `error:` line from the stage that finds it, and nothing half-written."""

from __future__ import annotations

import socket
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import RAMP, encoded, make_project, run_tool, set_params, user_error, write_twins


def covid_archive(path: Path, rows: list[dict[str, str]], files: dict[str, bytes], header: list[str] | None = None
                  ) -> Path:
    header = header or ["patientid", "finding", "view", "modality", "folder", "filename", "age", "sex", "license"]
    text = ",".join(header) + "\n" + "".join(",".join(row.get(c, "") for c in header) + "\n" for row in rows)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("repo-abc/metadata.csv", text)
        for name, data in files.items():
            archive.writestr(f"repo-abc/images/{name}", data)
    return path


@pytest.fixture(scope="module")
def stage_project(tmp_path_factory):
    """A project copy whose stages run one by one against a file:// mirror the tests fill."""
    root = tmp_path_factory.mktemp("stages")
    mirror = root / "mirror"
    mirror.mkdir()
    write_twins(mirror, seed=7, images_per_class=8, size=96)
    project = make_project(root / "repo", {"download.source": "upstream", "download.mirror": mirror.as_uri(),
                                          "download.retries": 0, "download.timeout_s": 5, "resize.size": 64})
    return project, mirror


@pytest.mark.parametrize(("key", "value", "says"), [
    ("split.test_size", 2, "split.test_size must be a number in (0, 1)"),
    ("split.group_by", "patients", "split.group_by must be one of 'patient', 'none'"),
    ("seed", "forty-two", "seed must be an integer"),
    ("merge.counts.covid", -3, "merge.counts.covid must be an integer >= 0"),
    ("download.source", "s3", "download.source must be one of 'upstream', 'synthetic'"),
    ("resize.mode", "crop", "resize.mode must be one of 'stretch', 'pad'"),
    ("train.image_size", 32, "train.image_size 32 is below xception's smallest input (71 px)"),
    ("train.image_size", 16, "train.image_size must be an integer >= 32"),
    ("train.backbone", "resnet", "train.backbone is 'resnet'; the registered backbones are xception, mobilenet_v2"),
    ("evaluate.stress.transforms.blur", [0.1], "names unknown transform(s) ['blur']"),
])
def test_bad_params_values_are_one_error_line(tmp_path, key, value, says, stage):
    project = make_project(tmp_path / "repo")
    set_params(project, {key: value})
    name = {"seed": "merge"}.get(key.split(".")[0], key.split(".")[0])
    assert says in user_error(stage(project, name))


def test_debug_switch_shows_the_traceback(tmp_path):
    project = make_project(tmp_path / "repo", {"split.test_size": 2})
    debug = run_tool(project, "python", "stages/split.py", env={"CORONET_DEBUG": "1"}, check=False)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ParamsError" in debug.stderr


def test_missing_params_key_is_named(tmp_path, stage):
    project = make_project(tmp_path / "repo")
    params = (project / "params.yaml").read_text().replace("  val_size: 0.1", "")
    (project / "params.yaml").write_text(params)
    assert "params.yaml has no split.val_size" in user_error(stage(project, "split"))


@pytest.mark.parametrize(("mirror", "says"), [
    ("htp://127.0.0.1/mirror", "only http://, https:// and file:// URLs"),
    ("http://", "cannot download"),
    ("file:///nonexistent/mirror", "no such file"),
])
def test_mistyped_or_missing_mirrors_are_one_error_line(stage_project, mirror, says, stage):
    project, _ = stage_project
    set_params(project, {"download.mirror": mirror})
    message = user_error(stage(project, "download"))
    assert says in message and "download.mirror" in message


def test_unreachable_mirror_is_one_error_line(stage_project, stage):
    project, _ = stage_project
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    set_params(project, {"download.mirror": f"http://127.0.0.1:{port}/mirror"})
    message = user_error(stage(project, "download"))
    assert f"127.0.0.1:{port}" in message and "after 1 attempts" in message


def test_bad_archive_is_one_error_line_and_leaves_the_cache(stage_project, tmp_path, stage):
    project, mirror = stage_project
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "covid-chestxray-dataset.zip").write_bytes((mirror / "covid-chestxray-dataset.zip").read_bytes())
    (bad / "ChestXRay2017.zip").write_bytes(b"<html>Sign in to download</html>")  # what a login page gives
    set_params(project, {"download.mirror": bad.as_uri()})
    assert "ChestXRay2017.zip is not a readable zip archive" in user_error(stage(project, "download"))
    cached = [p.name for p in (project / "data/raw/.downloads").iterdir()]
    assert not any(n.endswith("ChestXRay2017.zip") for n in cached)  # not reused by the next run
    assert any(n.endswith("covid-chestxray-dataset.zip") for n in cached)  # the good one is kept


def test_missing_metadata_columns_and_a_class_without_images(stage_project, tmp_path, stage):
    project, mirror = stage_project
    broken = tmp_path / "broken"
    broken.mkdir()
    for kept in ("ChestXRay2017.zip", "Actualmed-COVID-chestxray-dataset.zip"):
        (broken / kept).write_bytes((mirror / kept).read_bytes())
    set_params(project, {"download.mirror": broken.as_uri()})

    covid_archive(broken / "covid-chestxray-dataset.zip", [{"patientid": "1", "finding": "COVID-19"}], {},
                  header=["patientid", "finding", "view"])
    assert stage(project, "download").returncode == 0
    message = user_error(stage(project, "merge"))
    assert "lacks column(s) ['filename']" in message

    # Every COVID-19 row points at a file the archive lacks, or is a lateral film: no usable covid image.
    rows = [{"patientid": str(k), "finding": "COVID-19", "view": "PA", "modality": "X-ray", "filename": f"{k}.png"}
            for k in range(5)]
    rows.append({"patientid": "9", "finding": "COVID-19", "view": "L", "modality": "X-ray", "filename": "9.png"})
    covid_archive(broken / "covid-chestxray-dataset.zip", rows, {"9.png": encoded(RAMP.astype(np.uint8))})
    assert stage(project, "download").returncode == 0
    message = user_error(stage(project, "merge"))
    assert "no usable image for class covid (5 missing_file, 1 view)" in message and "rejected.csv" in message
    rejected = pd.read_csv(project / "data/interim/rejected.csv")  # the reasons are kept for the user
    assert ((rejected["label"] == "covid") & (rejected["source"] == "covid")).sum() == 6


def test_data_that_cannot_be_split_is_one_error_line(stage_project, stage):
    project, mirror = stage_project
    set_params(project, {"download.mirror": mirror.as_uri()})
    assert stage(project, "download").returncode == 0
    # Every COVID-19 image of the synthetic archive, but only one patient's: too few groups for three splits.
    set_params(project, {"merge.counts.covid": 1})
    assert stage(project, "merge").returncode == 0 and stage(project, "resize").returncode == 0
    message = user_error(stage(project, "split"))
    assert "class covid (1) has fewer than 2 independent groups" in message
