"""Hostile inputs: real-world duplicates, user mistakes, bad files, flaky servers, interrupted runs.

Each test names the item of the real-data issue it covers. Every failure a user can cause must end in
one ``error: ...`` line and a non-zero exit (never a traceback), lose nothing that was already done,
and leave no half-written output.
"""

from __future__ import annotations

import base64
import io
import os
import socket
import stat
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, PngImagePlugin

from conftest import (
    CLASSES,
    RAMP,
    in_process,
    make_dicom,
    make_project,
    params_with,
    run_tool,
    set_params,
    write_twins,
)
from coronet.data.download import ChecksumError, DownloadError, fetch
from coronet.data.duplicates import connected_groups
from coronet.data.manifest import select
from coronet.data.phantom import draw_xray
from coronet.data.sources import Candidate
from coronet.data.split import assign_splits, check_leakage
from coronet.files import atomic_dir, atomic_path
from coronet.images import ImageDecodeError, decode_grayscale
from coronet.params import MergeParams

PAYLOAD = bytes(range(256)) * 2048  # 512 KiB


def noise(shape: tuple[int, int] = (64, 64), seed: int = 0) -> np.ndarray:
    """An image the input checks accept (not uniform, big enough), unlike a flat test pattern."""
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


def encoded(gray: np.ndarray, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def user_error(result) -> str:
    """The one line a user sees for a failure they caused; fails the test on a traceback."""
    assert result.returncode == 1, (result.stdout[-2000:], result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


# 1. Duplicates by what the image shows ------------------------------------------------------------------


@pytest.fixture
def duplicate_pool(tmp_path):
    """Six covid films of six patients, plus: film 0 saved again with other bytes (a PNG text chunk) under
    patient 90, film 1 rescaled to 60% under patient 91, film 2 cropped by 3% per side under patient 92."""
    rng = np.random.default_rng(5)
    films = [draw_xray(rng, "covid", 256) for _ in range(6)]
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "another uploader")
    entries = {f"p{k}.png": encoded(film) for k, film in enumerate(films)}
    entries["p90.png"] = encoded(films[0], pnginfo=info)
    entries["p91.png"] = encoded(np.asarray(Image.fromarray(films[1]).resize((154, 154), Image.Resampling.LANCZOS)))
    entries["p92.png"] = encoded(films[2][8:-8, 8:-8])
    path = tmp_path / "covid.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    pool = [Candidate("covid", "covid", f"covid:{name[1:-4]}", "PA", "", "", "", str(path), name) for name in entries]
    return pool, entries


def test_identical_pixels_are_rejected_and_near_duplicates_grouped(duplicate_pool):
    pool, entries = duplicate_pool
    assert entries["p0.png"] != entries["p90.png"]  # different bytes, the same picture
    cfg = MergeParams.parse(params_with({"merge.counts": {c: 100 if c == "covid" else 0 for c in CLASSES}, "seed": 3}))
    selection = select(pool, cfg)
    selection.group_near_duplicates(max_distance=24)
    manifest = selection.manifest().set_index("original_path")
    rejected = selection.rejected_frame()
    assert list(rejected["code"]) == ["duplicate_pixels"]
    (dropped,) = set(rejected["path"])
    kept = "p0.png" if dropped == "p90.png" else "p90.png"
    assert dropped in {"p0.png", "p90.png"} and rejected["duplicate_of"].iloc[0] == manifest.loc[kept, "id"]
    assert rejected["label"].iloc[0] == "covid"
    pairs = {frozenset(p) for p in zip(selection.near_duplicates["id_a"], selection.near_duplicates["id_b"],
                                       strict=True)}
    ids = manifest["id"]
    assert pairs == {frozenset((ids["p1.png"], ids["p91.png"])), frozenset((ids["p2.png"], ids["p92.png"]))}
    groups = manifest["near_duplicate_group"]
    assert groups["p1.png"] == groups["p91.png"] != groups["p2.png"] == groups["p92.png"]
    assert groups.nunique() == len(manifest) - 2

    # The same selection from the pool in another order keeps the same copy (deterministic).
    again = select(list(reversed(pool)), cfg)
    assert set(again.rejected_frame()["path"]) == {dropped}


def test_split_keeps_near_duplicates_of_different_patients_together():
    rows = []
    for k in range(80):
        label = CLASSES[k % 4]
        # Pairs of near duplicates uploaded under two patients: (0, 1), (2, 3), ...
        rows.append({"id": f"img{k:03d}", "label": label if k % 8 < 4 else CLASSES[(k - 1) % 4],
                     "patient_id": f"P{k}", "sha256": f"s{k}", "near_duplicate_group": f"img{k - k % 2:03d}"})
    frame = pd.DataFrame(rows)
    for group_by in ("patient", "none"):
        merged = frame.merge(assign_splits(frame, 0.2, 0.1, group_by, seed=4), on="id")
        assert (merged.groupby("near_duplicate_group")["split"].nunique() == 1).all()
        assert check_leakage(merged, group_by)["near_duplicate_groups_shared"] == 0


def test_connected_groups_chain_links_across_columns():
    frame = pd.DataFrame({"patient_id": ["a", "a", "b", "c", "d"], "group": ["1", "2", "2", "3", "4"]})
    component = connected_groups(frame, ["patient_id", "group"])
    assert component[0] == component[1] == component[2] != component[3] != component[4]


# 2. No traceback for what a user can cause ------------------------------------------------------------


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


@pytest.fixture
def stage(monkeypatch, capsys):
    """Runs a stage script in this process, as DVC would (its exit code, stdout and stderr): the same code
    path as a subprocess without paying for one."""
    import subprocess

    def run(project: Path, name: str) -> subprocess.CompletedProcess[str]:
        code, out, err = in_process(project, name, monkeypatch, capsys)
        return subprocess.CompletedProcess([name], code, out, err)

    return run


@pytest.mark.parametrize(("key", "value", "says"), [
    ("split.test_size", 2, "split.test_size must be a number in (0, 1)"),
    ("split.group_by", "patients", "split.group_by must be one of 'patient', 'none'"),
    ("seed", "forty-two", "seed must be an integer"),
    ("merge.counts.covid", -3, "merge.counts.covid must be an integer >= 0"),
    ("download.source", "s3", "download.source must be one of 'upstream', 'synthetic'"),
    ("resize.mode", "crop", "resize.mode must be one of 'stretch', 'pad'"),
    ("train.image_size", 32, "train.image_size must be an integer >= 71"),
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


# 4. predict and serving: one bad input never spoils the others ---------------------------------------


def test_predict_reports_odd_files_per_row(capsys, model_path, tmp_path):
    from coronet.cli import main

    good = tmp_path / "good.png"
    good.write_bytes(encoded(noise((90, 80))))
    odd = {
        "window0.dcm": make_dicom(RAMP, WindowCenter=1000, WindowWidth=0),
        # pydicom refuses to write a non-numeric IS: patch the two value bytes of (0028,0008) "7 " -> "ma".
        "frames.dcm": make_dicom(RAMP, NumberOfFrames=7).replace(b"\x28\x00\x08\x00IS\x02\x007 ",
                                                                 b"\x28\x00\x08\x00IS\x02\x00ma"),
        "slope0.dcm": make_dicom(RAMP, RescaleSlope=0),
        "scan.tiff": encoded(np.full((20, 20), 5, np.uint8), "TIFF"),
        "scan.gif": encoded(np.full((20, 20), 5, np.uint8), "GIF"),
    }
    for name, data in odd.items():
        (tmp_path / name).write_bytes(data)
    out = tmp_path / "results.csv"
    code = main(["predict", str(tmp_path), "--model", str(model_path), "--format", "csv", "--output", str(out)])
    assert code == 1
    frame = pd.read_csv(out, keep_default_na=False).set_index("file")
    assert frame.loc[str(good), "error"] == "" and frame.loc[str(good), "predicted"] in CLASSES
    errors = {Path(f).name: e for f, e in frame["error"].items()}
    assert "WindowWidth 0 is invalid" in errors["window0.dcm"]
    assert errors["frames.dcm"] == "DICOM NumberOfFrames 'ma' is not a whole number"
    assert "RescaleSlope is 0" in errors["slope0.dcm"]
    assert errors["scan.tiff"] == "TIFF images are not accepted: PNG, JPEG or DICOM only"
    assert errors["scan.gif"] == "GIF images are not accepted: PNG, JPEG or DICOM only"
    assert "5 of 6 file(s) failed" in capsys.readouterr().err


@pytest.mark.parametrize("size", ["0", "-3", "ten"])
def test_bad_batch_size_is_a_usage_error(capsys, model_path, tmp_path, size):
    from coronet.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(tmp_path), "--model", str(model_path), "--batch-size", size])
    assert exit_info.value.code == 2 and "--batch-size" in capsys.readouterr().err


def test_gradcam_overlays_of_same_named_inputs_do_not_overwrite(capsys, model_path, tmp_path):
    from coronet.cli import main

    inputs = [tmp_path / "a" / "scan.png", tmp_path / "b" / "scan.png", tmp_path / "scan.dcm"]
    for k, path in enumerate(inputs[:2]):
        path.parent.mkdir()
        path.write_bytes(encoded(noise(seed=k)))
    inputs[2].write_bytes(make_dicom(RAMP))
    cams = tmp_path / "cams"
    assert main(["predict", *map(str, inputs), "--model", str(model_path), "--gradcam", str(cams)]) == 0
    written = sorted(p.name for p in cams.iterdir())
    assert len(written) == 3 and all(n.startswith("scan-") and n.endswith("_gradcam.png") for n in written)


def test_served_model_answers_bad_rows_per_row_in_batches_and_caps_requests(model_path):
    from mlflow.exceptions import MlflowException

    from coronet.model.classifier import Classifier
    from coronet.serving.pyfunc import CoronetImageModel

    model = CoronetImageModel()
    model.classifier, model.max_rows, model.batch_size, model.low_confidence = Classifier.load(model_path), 6, 2, 0.5
    seen: list[int] = []
    probabilities = model.classifier.probabilities
    model.classifier.probabilities = lambda batch: seen.append(len(batch)) or probabilities(batch)
    good = base64.b64encode(encoded(noise((50, 50)))).decode()
    request = pd.DataFrame({"image": [good, None, "", "not base64!", base64.b64encode(b"plain text").decode(), good]})
    answer = model.predict(None, request)
    assert list(answer["predicted"] != "") == [True, False, False, False, False, True]
    assert answer["error"].iloc[1] == "no image in this row (null)"
    assert answer["error"].iloc[2] == "no image in this row (empty)"
    assert answer["error"].iloc[3].startswith("the image is not valid base64")
    assert answer["error"].iloc[4].startswith("not a recognised image format")
    assert max(seen) <= 2 and sum(seen) == 2  # batches of at most batch_size, only the good rows
    with pytest.raises(MlflowException, match="7 rows in one request; at most 6"):
        model.predict(None, pd.DataFrame({"image": [good] * 7}))


# 5. Decoder limits and scaling ------------------------------------------------------------------------


def deflated_dicom(pixels: np.ndarray) -> bytes:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    return make_dicom(pixels, syntax=DeflatedExplicitVRLittleEndian)


def test_dicom_pixel_limit_applies_before_decoding(monkeypatch):
    from PIL import Image as PILImage

    data = deflated_dicom(np.zeros((200, 300), np.uint16))
    assert decode_grayscale(data).shape == (200, 300)  # deflated DICOM decodes within the limit
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(ImageDecodeError, match="300 x 200 pixels is over the 10,000-pixel limit"):
        decode_grayscale(data)
    with pytest.raises(ImageDecodeError, match="over the 10,000-pixel limit"):
        decode_grayscale(make_dicom(np.zeros((200, 300), np.uint16)))


def test_deflated_dicom_is_never_inflated_past_the_limit(monkeypatch):
    from PIL import Image as PILImage

    import coronet.images

    # 120 kB of pixels that deflate to almost nothing: a small file claiming a large image.
    data = deflated_dicom(np.zeros((200, 300), np.uint16))
    assert len(data) < 2_000
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 10_000)
    monkeypatch.setattr(coronet.images, "METADATA_ALLOWANCE", 0)
    with pytest.raises(ImageDecodeError, match="inflates to more than 20,000 bytes"):
        decode_grayscale(data)


def test_multiframe_dicom_decodes_its_first_frame():
    frames = np.stack([RAMP, RAMP[:, ::-1], np.zeros_like(RAMP)])
    data = make_dicom(RAMP, NumberOfFrames=3)
    from pydicom import dcmread

    ds = dcmread(io.BytesIO(data))
    ds.PixelData = frames.astype("<u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    out = decode_grayscale(buffer.getvalue())
    assert out.shape == RAMP.shape
    np.testing.assert_array_equal(out, decode_grayscale(make_dicom(RAMP)))


@pytest.mark.parametrize("slope", [0, float("nan")])
def test_rescale_slope_zero_or_nan_is_an_error(slope):
    with pytest.raises(ImageDecodeError, match="RescaleSlope"):
        decode_grayscale(make_dicom(RAMP, RescaleSlope=slope))


def test_12bit_content_in_a_16bit_png_is_scaled_by_its_real_range():
    twelve_bit = np.linspace(0, 4095, 64 * 16).astype(np.uint16).reshape(16, 64)
    out = decode_grayscale(encoded(twelve_bit))
    assert out.min() == 0 and out.max() == 255  # not 0..16, as scaling by 65535 gave
    np.testing.assert_array_equal(out, decode_grayscale(make_dicom(twelve_bit)))


# 6. Downloads -------------------------------------------------------------------------------------------


def get(server, tmp_path, name="/a.zip", **kwargs):
    kwargs.setdefault("backoff_s", 0.01)
    kwargs.setdefault("retries", 3)
    return fetch(server.url + name, tmp_path / "out" / "a.zip", cache_dir=tmp_path / "cache", **kwargs)


def parts(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "cache").glob("*.part"))


def test_partial_download_survives_a_failed_run_and_resumes_with_if_range(file_server, tmp_path):
    file_server.files["/a.zip"] = PAYLOAD
    file_server.drop["/a.zip"] = 200_000
    with pytest.raises(DownloadError, match="the next run resumes"):
        get(file_server, tmp_path, retries=0)
    (part,) = parts(tmp_path)
    kept = part.stat().st_size
    assert 0 < kept <= 200_000
    fetched = get(file_server, tmp_path)
    assert fetched.path.read_bytes() == PAYLOAD
    assert file_server.requests[-1][1] == f"bytes={kept}-"  # continued where the failed run stopped
    assert file_server.if_range[-1] and file_server.if_range[-1].startswith('"')  # the ETag of the first answer
    assert not parts(tmp_path)


def test_partial_of_a_changed_remote_file_is_not_continued(file_server, tmp_path):
    file_server.files["/a.zip"] = PAYLOAD
    file_server.drop["/a.zip"] = 200_000
    with pytest.raises(DownloadError):
        get(file_server, tmp_path, retries=0)
    changed = PAYLOAD[::-1]
    file_server.files["/a.zip"] = changed  # new ETag: If-Range fails and the server sends the whole file
    assert get(file_server, tmp_path).path.read_bytes() == changed


def test_partial_without_a_validator_restarts(file_server, tmp_path):
    file_server.validators = False
    file_server.files["/a.zip"] = PAYLOAD
    file_server.drop["/a.zip"] = 200_000
    with pytest.raises(DownloadError):
        get(file_server, tmp_path, retries=0)
    assert get(file_server, tmp_path).path.read_bytes() == PAYLOAD
    assert file_server.requests[-1][1] is None  # nothing proved the file unchanged: no Range


def test_gzip_encoded_answers_are_decoded(file_server, tmp_path):
    file_server.files["/a.zip"] = PAYLOAD
    file_server.gzip.add("/a.zip")
    fetched = get(file_server, tmp_path, sha256=__import__("hashlib").sha256(PAYLOAD).hexdigest())
    assert fetched.path.read_bytes() == PAYLOAD


@pytest.mark.parametrize("status", [408, 429, 503])
def test_throttling_answers_are_retried_after_retry_after(file_server, tmp_path, status):
    file_server.files["/a.zip"] = PAYLOAD
    file_server.answers["/a.zip"] = [(status, {"Retry-After": "1"})]
    started = time.monotonic()
    assert get(file_server, tmp_path, backoff_s=0.01).path.read_bytes() == PAYLOAD
    assert time.monotonic() - started >= 0.9  # honoured the server's 1 s, not our 10 ms backoff


def test_retry_after_beyond_reason_is_reported(file_server, tmp_path):
    file_server.files["/a.zip"] = PAYLOAD
    file_server.answers["/a.zip"] = [(429, {"Retry-After": "86400"})]
    with pytest.raises(DownloadError, match="asks to retry in 86400 s; try later"):
        get(file_server, tmp_path)


def test_trickling_server_is_a_stall_and_the_download_resumes(file_server, tmp_path):
    file_server.files["/a.zip"] = PAYLOAD
    file_server.trickle["/a.zip"] = (500, 0.05, 60)  # 10 kB/s for 3 s: no progress worth the name
    started = time.monotonic()
    fetched = get(file_server, tmp_path, timeout_s=0.5)
    assert fetched.path.read_bytes() == PAYLOAD
    assert time.monotonic() - started < 3  # gave up on the trickle instead of waiting it out
    assert len(file_server.requests) == 2 and file_server.requests[1][1].startswith("bytes=")


def test_tampered_download_is_deleted_and_a_good_one_reused(file_server, tmp_path):
    import hashlib

    file_server.files["/a.zip"] = PAYLOAD[:-4] + b"evil"
    with pytest.raises(ChecksumError):
        get(file_server, tmp_path, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert not parts(tmp_path) and not (tmp_path / "out" / "a.zip").exists()
    file_server.files["/a.zip"] = PAYLOAD
    get(file_server, tmp_path, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    before = len(file_server.requests)
    again = get(file_server, tmp_path, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert again.path.read_bytes() == PAYLOAD and len(file_server.requests) == before  # pinned: no request at all
    file_server.files["/a.zip"] = PAYLOAD[::-1]  # unpinned, changed upstream: downloaded again
    assert get(file_server, tmp_path).path.read_bytes() == PAYLOAD[::-1]


def test_a_failing_second_archive_never_costs_the_first(file_server, tmp_path, stage):
    covid_zip, kermany_zip = tmp_path / "covid-chestxray-dataset.zip", tmp_path / "ChestXRay2017.zip"
    write_twins(tmp_path, seed=2, images_per_class=4, size=64)
    file_server.files["/m/covid-chestxray-dataset.zip"] = covid_zip.read_bytes()
    project = make_project(tmp_path / "repo", {"download.source": "upstream", "download.retries": 0,
                                               "download.mirror": f"{file_server.url}/m"})
    assert "HTTP 404" in user_error(stage(project, "download"))
    assert (project / "data/raw/archives/covid-chestxray-dataset.zip").read_bytes() == covid_zip.read_bytes()
    file_server.files["/m/ChestXRay2017.zip"] = kermany_zip.read_bytes()
    file_server.files["/m/Actualmed-COVID-chestxray-dataset.zip"] = (
        tmp_path / "Actualmed-COVID-chestxray-dataset.zip").read_bytes()
    assert stage(project, "download").returncode == 0
    # The COVID-19 archive came from the download cache, after the server said it had not changed.
    assert file_server.not_modified == ["/m/covid-chestxray-dataset.zip"]
    assert [p for p, _ in file_server.requests].count("/m/covid-chestxray-dataset.zip") == 2


# 7. Training state ----------------------------------------------------------------------------------------


def test_checkpoint_fingerprint_covers_the_declared_dependencies_and_versions(monkeypatch, tmp_path):
    """A checkpoint belongs to the train stage's declared dependencies (a code fix in any of them, new
    data), its params and the TensorFlow/Keras versions: nothing else resumes it."""
    import keras

    from coronet.model.checkpoints import fingerprint, stage_dependencies

    module, data = tmp_path / "fit.py", tmp_path / "images"
    module.write_text("LEARNING = 1\n")
    data.mkdir()
    (data / "a.png").write_bytes(b"x")
    (tmp_path / "dvc.yaml").write_text(f"stages:\n  train:\n    deps:\n      - {module}\n      - {data}\n")
    deps = stage_dependencies("train", tmp_path / "dvc.yaml")
    assert deps == [module, data]
    before = fingerprint({"epochs": 2}, deps)
    assert fingerprint({"epochs": 2}, deps) == before and fingerprint({"epochs": 3}, deps) != before
    module.write_text("LEARNING = 2  # a code fix\n")
    after_fix = fingerprint({"epochs": 2}, deps)
    assert after_fix != before
    (data / "b.png").write_bytes(b"y")  # one more image in a declared folder
    assert fingerprint({"epochs": 2}, deps) != after_fix
    now = fingerprint({"epochs": 2}, deps)
    monkeypatch.setattr(keras, "__version__", "0.0.1")
    assert fingerprint({"epochs": 2}, deps) != now


# 8. Files people share ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_outputs_honour_the_umask(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        with atomic_path(tmp_path / "out.json") as tmp:
            tmp.write_text("{}")
        with atomic_dir(tmp_path / "folder") as folder:
            (folder / "x.png").write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == dir_mode
