"""Code tier: `coronet predict` on PNG, JPEG and DICOM files, folders, bad files and every format."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import CLASSES, RAMP, VENV_BIN, encoded, make_dicom, noise
from coronet.cli import main
from coronet.records import RunRecord
from coronet.serving.models import DISCLAIMER


def image_bytes(fmt: str, mode: str = "L", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (120, 100), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(image_bytes("PNG", "RGBA", 1))
    (folder / "sub" / "b.jpg").write_bytes(image_bytes("JPEG", "RGB", 2))
    (folder / "sub" / "c.dcm").write_bytes(make_dicom(RAMP, "MONOCHROME1"))
    (folder / "d.jpg").write_bytes(image_bytes("PNG", "I;16", 3))  # 16-bit PNG named .jpg
    return folder


def run(capsys, *args):
    code = main(["predict", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_folder_json_all_good(capsys, model_path, images):
    code, out, err = run(capsys, str(images), "--model", str(model_path), "--format", "json")
    assert code == 0 and DISCLAIMER in err and DISCLAIMER not in out
    # A synthetic model says so: one line on stderr, and in every answer
    assert any(line.startswith("model: ") and "SYNTHETIC images" in line for line in err.splitlines())
    rows = json.loads(out)
    assert [Path(r["file"]).resolve().relative_to(images.resolve()).as_posix() for r in rows] == [
        "a.png", "d.jpg", "sub/b.jpg", "sub/c.dcm"]
    for r in rows:
        probs = [r[f"p_{c}"] for c in CLASSES]
        # each probability is rounded to 6 decimals (4 x 5e-7) and float32 softmax sums to 1 within 1e-6
        assert sum(probs) == pytest.approx(1, abs=1e-4)
        assert r[f"p_{r['predicted']}"] == pytest.approx(max(probs), abs=1e-6)  # rounding may tie
        # the group is summed before rounding, its members after: three roundings of 5e-7
        assert r["pg_pneumonia"] == pytest.approx(r["p_pneumonia_bacterial"] + r["p_pneumonia_viral"], abs=2e-6)
        assert r["error"] == "" and r["low_confidence"] in {True, False} and isinstance(r["checks"], str)
        assert r["training_data"] == "synthetic"


def test_bad_files_are_reported_and_do_not_stop_the_good(capsys, model_path, images, tmp_path):
    (images / "empty.png").write_bytes(b"")
    (images / "notes.jpg").write_text("not an image")
    (images / "cut.jpg").write_bytes(image_bytes("JPEG", "L", 4)[:300])
    missing = tmp_path / "missing.png"
    code, out, err = run(capsys, str(images), str(missing), "--model", str(model_path), "--format", "csv")
    assert code == 1 and "4 of 8 file(s) failed" in err
    frame = pd.read_csv(io.StringIO(out), keep_default_na=False)
    frame = frame.set_index(frame["file"].map(lambda f: str(Path(f).resolve())))
    assert frame.loc[str(images / "empty.png"), "error"] == "empty file (0 bytes)"
    assert frame.loc[str(images / "notes.jpg"), "error"].startswith("not a recognised image format")
    assert "truncated" in frame.loc[str(images / "cut.jpg"), "error"]
    assert frame.loc[str(missing.resolve()), "error"] == "no such file"
    good = frame[frame["error"] == ""]
    assert len(good) == 4 and set(good["predicted"]) <= set(CLASSES)


def test_batching_does_not_change_results_and_output_file(capsys, model_path, images, tmp_path):
    out_file = tmp_path / "r.json"
    assert run(capsys, str(images), "--model", str(model_path), "--format", "json", "--batch-size", "1",
               "--output", str(out_file))[0] == 0
    one_by_one = json.loads(out_file.read_text())
    batched = json.loads(run(capsys, str(images), "--model", str(model_path), "--format", "json")[1])
    for a, b in zip(one_by_one, batched, strict=True):
        assert a["predicted"] == b["predicted"]
        # other batch sizes, other BLAS blocking: float32 rounding (1e-6 on a probability) plus 6-decimal rounding
        assert [a[f"p_{c}"] for c in CLASSES] == pytest.approx([b[f"p_{c}"] for c in CLASSES], abs=1e-5)


def test_table_and_gradcam(capsys, model_path, images, tmp_path, monkeypatch):
    """The terminal table: paths relative to the working directory, short class columns and the grouped
    view (the CSV's pg_ columns); overlays at a readable size, captioned with class and score."""
    monkeypatch.chdir(images)
    code, out, _ = run(capsys, "a.png", "sub", "--model", str(model_path), "--gradcam", str(tmp_path / "cam"),
                         "--gradcam-class", "covid")
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split()[:5] == ["file", "predicted", "p", "p_covid", "group"]
    assert [line.split()[0] for line in lines] == ["a.png", "sub/b.jpg", "sub/c.dcm"]  # relative, as given
    for line in lines:  # p is the predicted class's probability
        _, predicted, p, *_ = line.split()
        assert predicted in CLASSES and 0.25 <= float(p) <= 1
    assert max(map(len, out.splitlines())) <= 120  # rows of ~160 columns wrapped at 120
    code, wide, _ = run(capsys, "a.png", "sub", "--model", str(model_path), "--wide")
    assert wide.splitlines()[0].split()[:9] == ["file", "predicted", *CLASSES, "group", "COVID", "NORMAL"]
    written = sorted(p.name for p in (tmp_path / "cam").iterdir())
    assert written == ["a_gradcam.png", "b_gradcam.png", "c_gradcam.png"]
    overlay = Image.open(tmp_path / "cam" / "a_gradcam.png")
    assert overlay.mode == "RGB" and min(overlay.size) >= 300  # not the model's 71 px
    band = np.asarray(overlay)[:10]
    assert (band.max(axis=2) > 200).any() and (band.max(axis=2) < 30).mean() > 0.5  # white caption on black


def test_unloadable_models_are_a_clear_error(capsys, images, tmp_path, monkeypatch):
    code, _, err = run(capsys, str(images), "--model", str(tmp_path / "none.keras"))
    assert code == 2 and "cannot load the model" in err and "run.json" in err
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/empty.db")
    code, _, err = run(capsys, str(images), "--model-uri", "models:/nothing@champion")
    assert code == 2 and err.startswith("error: cannot load the model models:/nothing@champion")
    assert len(err.strip().splitlines()) == 1


def test_gradcam_folder_that_is_a_file_or_unwritable_is_one_error_line(capsys, model_path, images, tmp_path):
    """`--gradcam /etc/passwd` (a file) or a folder that cannot be made was a traceback."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    for target, says in ((a_file, "that is a file, not a folder"), (a_file / "cams", "cannot write there")):
        code, out, err = run(capsys, str(images), "--model", str(model_path), "--gradcam", str(target))
        assert code == 2 and out == "" and "Traceback" not in err
        assert err.strip().splitlines() == [err.strip()] and err.startswith("error: --gradcam") and says in err


def test_overlays_that_cannot_be_written_cost_no_results(model_path, images, tmp_path):
    """A full disk under --gradcam killed the run at the first overlay and --output,
    on another disk, was never written. A file-size limit on the process (RLIMIT_FSIZE) makes every
    overlay write fail with EFBIG, as a full disk does, while the small CSV still fits."""
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))\n"
        "from coronet.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    out = tmp_path / "results.csv"
    result = subprocess.run([str(VENV_BIN / "python"), "-c", script, "predict", str(images), "--model", str(model_path),
                             "--format", "csv", "--output", str(out), "--gradcam", str(tmp_path / "cams")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    rows = pd.read_csv(out, keep_default_na=False)
    assert len(rows) == 4 and (rows["error"] == "").all() and rows["predicted"].isin(CLASSES).all()
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "4 Grad-CAM overlay(s) could not be written" in errors[0] and "File too large" in errors[0]


def test_a_dangling_symlink_in_a_folder_is_reported(capsys, model_path, images):
    """A dangling symlink inside a folder was silently left out (20 rows, 21 files)."""
    (images / "gone.png").symlink_to(images / "deleted-long-ago.png")
    code, out, _ = run(capsys, str(images), "--model", str(model_path), "--format", "json")
    rows = {Path(r["file"]).name: r for r in json.loads(out)}
    assert code == 1 and len(rows) == 5 and rows["gone.png"]["error"] == "no such file"
    assert rows["gone.png"]["p_covid"] is None  # JSON null, not NaN


@pytest.mark.parametrize(("shape", "value", "says"), [
    ((1, 1), None, "image is 1 x 1 pixels: too small to be a chest X-ray"),
    ((1, 5000), None, "image is 5000 x 1 pixels: too small"),
    ((40, 400), None, "image is 400 x 40 pixels (aspect ratio 10:1): not a chest X-ray"),
    ((300, 300), 128, "image is uniform (every pixel about 128): nothing to classify"),
])
def test_inputs_that_cannot_be_xrays_get_no_probabilities(capsys, model_path, tmp_path, shape, value, says):
    """1x1, 5000x1 and constant images were classified with confident-looking numbers."""
    rng = np.random.default_rng(0)
    pixels = np.full(shape, value, np.uint8) if value is not None else rng.integers(0, 255, shape, dtype=np.uint8)
    path = tmp_path / "odd.png"
    Image.fromarray(pixels).save(path)
    code, out, _ = run(capsys, str(path), "--model", str(model_path), "--format", "json")
    (row,) = json.loads(out)
    assert code == 1 and row["error"].startswith(says) and row["predicted"] == ""
    assert all(row[f"p_{c}"] is None for c in CLASSES)


def test_low_confidence_answers_are_flagged(capsys, model_path, images):
    """The untrained model answers about 0.25 for every class: under any threshold above that."""
    for threshold, flagged in (("0.9", True), ("0.1", False)):
        code, out, _ = run(capsys, str(images / "a.png"), "--model", str(model_path), "--format", "json",
                           "--low-confidence", threshold)
        assert code == 0 and json.loads(out)[0]["low_confidence"] is flagged


def test_a_named_pipe_is_refused_not_waited_on(capsys, model_path, images):
    """`coronet predict` on a named pipe hung, waiting for a writer."""

    os.mkfifo(images / "pipe.png")
    code, out, _ = run(capsys, str(images / "pipe.png"), str(images / "a.png"), "--model", str(model_path),
                       "--format", "json")
    rows = {Path(r["file"]).name: r for r in json.loads(out)}
    assert code == 1 and rows["pipe.png"]["error"].startswith("not a regular file") and rows["a.png"]["error"] == ""


def test_ctrl_c_is_one_line(model_path, images):
    """Ctrl-C in `coronet predict` printed ~50 lines of traceback."""
    script = ("import sys\nimport coronet.serving.predict as p\n"
              "def stop(*a, **k):\n    raise KeyboardInterrupt\n"
              "p.classify = stop\nfrom coronet.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    done = subprocess.run([str(VENV_BIN / "python"), "-c", script, "predict", str(images), "--model", str(model_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 130 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1].startswith("interrupted: ") and "Traceback" not in done.stderr


@pytest.mark.parametrize("damage", ["swap classes", "other model", "corrupt file"])
def test_a_model_that_does_not_match_its_record_is_refused(capsys, model_path, images, tmp_path, damage):
    """Swapped classes in run.json gave answers under the wrong names (exit 0); a corrupt
    model file was called "File not found"."""
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(model_path.parent, folder)
    record = json.loads((folder / "run.json").read_text())
    if damage == "swap classes":
        record["model"]["classes"][0:2] = record["model"]["classes"][1::-1]
        (folder / "run.json").write_text(json.dumps(record))
        says = "were changed after training"
    elif damage == "other model":
        (folder / "coronet.keras").write_bytes((folder / "coronet.keras").read_bytes() + b"\0")
        says = "sha256 is not the one the record names"
    else:
        (folder / "coronet.keras").write_bytes(b"PK\x03\x04 cut short")
        resealed = RunRecord.read(folder / "run.json")  # as if train had written this file: only Keras can tell
        resealed.model = dataclasses.replace(resealed.model, sha256=hashlib.sha256(b"PK\x03\x04 cut short").hexdigest())
        resealed.sealed().write(folder / "run.json")
        says = "not a Keras model file"
    code, out, err = run(capsys, str(images / "a.png"), "--model", str(folder / "coronet.keras"))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and says in err, err
    assert str(folder / "coronet.keras") in err


def test_an_unreachable_tracking_server_is_named_in_seconds(capsys, images, tmp_path, monkeypatch):
    """With MLFLOW_TRACKING_URI at a dead server, predict was silent for 5 minutes, then
    blamed a missing alias. Now: MLflow's client retries for seconds (tracking.HTTP_SETTINGS) and says why."""

    from conftest import free_port

    monkeypatch.chdir(tmp_path)  # no models/coronet.keras here: the registry's @candidate is asked for
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    code, out, err = run(capsys, str(images / "a.png"))
    assert code == 2 and out == "" and err.startswith("error: cannot reach the tracking server http://127.0.0.1:")
    assert len(err.strip().splitlines()) == 1
    assert time.monotonic() - started < 60  # two retries of a refused connection with backoff 1: seconds


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


def test_an_unwritable_output_is_found_before_classifying(capsys, model_path, images, tmp_path, monkeypatch):
    """An --output in a folder that does not exist was found only after every image was classified."""
    from coronet.model import classifier

    monkeypatch.setattr(classifier.Classifier, "load", None)  # reaching the model at all would fail the test
    code, out, err = run(capsys, str(images), "--model", str(model_path), "--output", str(tmp_path / "no" / "r.csv"))
    assert code == 2 and out == "" and err.startswith(f"error: --output {tmp_path / 'no' / 'r.csv'}: cannot write")


def test_low_confidence_defaults_to_the_projects_serving_param(capsys, model_path, images, tmp_path, monkeypatch):
    """`coronet predict` flagged under 0.5 whatever params serving.low_confidence said (the page used the param)."""
    from conftest import ROOT

    params = (ROOT / "params.yaml").read_text().replace("low_confidence: 0.5", "low_confidence: 0.999")
    assert "low_confidence: 0.999" in params
    (tmp_path / "params.yaml").write_text(params)
    monkeypatch.chdir(tmp_path)
    out = run(capsys, str(images), "--model", str(model_path), "--format", "json")[1]
    flagged = [r["low_confidence"] for r in json.loads(out) if r["predicted"]]
    assert flagged and all(flagged)  # an untrained model is never 99.9% sure
    out = run(capsys, str(images), "--model", str(model_path), "--format", "json", "--low-confidence", "0")[1]
    assert not any(r["low_confidence"] for r in json.loads(out) if r["predicted"])


def test_the_console_script_says_it_is_loading_and_shows_progress_from_the_first_image(model_path, images, tmp_path):
    """`coronet predict` printed nothing for 40-52 s on 7-11 films (its bar started above 64 images). At a terminal
    (a pseudo-terminal here, as a person's) it says it is loading the model, then draws its bar for a few files;
    its answer goes to stdout."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120-column terminal
    done = subprocess.run([str(VENV_BIN / "coronet"), "predict", str(images / "a.png"), "--model", str(model_path),
                           "--format", "csv"], stdout=subprocess.PIPE, stderr=follower, text=True, timeout=300)
    os.close(follower)
    said = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        said += chunk
    os.close(leader)
    text = said.decode(errors="replace")
    assert done.returncode == 0, text[-2000:]
    assert "loading the model to classify 1 file(s)" in text and "predict" in text, text[-2000:]
    assert text.index("loading the model to classify 1 file(s)") < text.index("predict")  # then the bar, 1 image
    assert "1/1" in text
    assert pd.read_csv(io.StringIO(done.stdout))["predicted"].isin(CLASSES).all()


def test_a_stage_notes_its_wall_time_and_the_demo_tables_them(tmp_path):
    """make demo says where its time went: each stage, run as DVC runs it, adds its wall time (interpreter and
    imports included) to the file CORONET_STAGE_TIMES names; a failed stage adds nothing."""
    from coronet.experiments.demo import stage_time_table

    times = tmp_path / "times.jsonl"
    for name, code in (("split", 0), ("train", 1)):
        script = tmp_path / f"{name}.py"
        script.write_text(f"import time\nfrom coronet.errors import run_stage\ntime.sleep(0.3)\nrun_stage(lambda: {code})\n")
        subprocess.run([sys.executable, str(script)], env={**os.environ, "CORONET_STAGE_TIMES": str(times)}, check=False)
    (line,) = times.read_text().splitlines()
    noted = json.loads(line)
    assert noted["stage"] == "split" and 0.3 <= noted["seconds"] < 60
    table = stage_time_table(times, 100.0).splitlines()
    assert table[1].split()[0] == "split" and table[2].startswith("dvc ") and table[-1].split() == ["total", "100"]
    assert float(table[2].split()[-2]) == pytest.approx(100 - noted["seconds"], abs=1)
