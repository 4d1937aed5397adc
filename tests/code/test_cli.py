"""Code tier: `coronet predict` on PNG, JPEG and DICOM files, folders, bad files and every format."""

from __future__ import annotations

import io
import json
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_dicom import RAMP, make_dicom

from conftest import VENV_BIN
from coronet.cli import DISCLAIMER, main

CLASSES = ["covid", "normal", "pneumonia_bacterial", "pneumonia_viral"]


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
    rows = json.loads(out)
    assert [r["file"].removeprefix(str(images)) for r in rows] == ["/a.png", "/d.jpg", "/sub/b.jpg", "/sub/c.dcm"]
    for r in rows:
        probs = [r[f"p_{c}"] for c in CLASSES]
        assert sum(probs) == pytest.approx(1, abs=1e-4)
        assert r[f"p_{r['predicted']}"] == pytest.approx(max(probs), abs=1e-6)  # rounding may tie
        assert r["pg_pneumonia"] == pytest.approx(r["p_pneumonia_bacterial"] + r["p_pneumonia_viral"], abs=2e-6)
        assert r["error"] == ""


def test_bad_files_are_reported_and_do_not_stop_the_good(capsys, model_path, images, tmp_path):
    (images / "empty.png").write_bytes(b"")
    (images / "notes.jpg").write_text("not an image")
    (images / "cut.jpg").write_bytes(image_bytes("JPEG", "L", 4)[:300])
    missing = tmp_path / "missing.png"
    code, out, err = run(capsys, str(images), str(missing), "--model", str(model_path), "--format", "csv")
    assert code == 1 and "4 of 8 file(s) failed" in err
    frame = pd.read_csv(io.StringIO(out), keep_default_na=False).set_index("file")
    assert frame.loc[str(images / "empty.png"), "error"] == "empty file (0 bytes)"
    assert frame.loc[str(images / "notes.jpg"), "error"].startswith("not a recognised image format")
    assert "truncated" in frame.loc[str(images / "cut.jpg"), "error"]
    assert frame.loc[str(missing), "error"] == "no such file"
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
        assert [a[f"p_{c}"] for c in CLASSES] == pytest.approx([b[f"p_{c}"] for c in CLASSES], abs=1e-5)


def test_table_and_gradcam(capsys, model_path, images, tmp_path):
    code, out, _ = run(capsys, str(images / "a.png"), str(images / "sub"), "--model", str(model_path),
                       "--gradcam", str(tmp_path / "cam"), "--gradcam-class", "covid")
    assert code == 0 and "a.png" in out and "p_covid" in out
    written = sorted(p.name for p in (tmp_path / "cam").iterdir())
    assert written == ["a_gradcam.png", "b_gradcam.png", "c_gradcam.png"]
    assert Image.open(tmp_path / "cam" / "a_gradcam.png").mode == "RGB"


def test_console_script(model_path, images):
    result = subprocess.run([str(VENV_BIN / "coronet"), "predict", str(images / "a.png"), "--model",
                             str(model_path), "--format", "csv"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert pd.read_csv(io.StringIO(result.stdout))["predicted"].isin(CLASSES).all()


def test_unloadable_models_are_a_clear_error(capsys, images, tmp_path, monkeypatch):
    code, _, err = run(capsys, str(images), "--model", str(tmp_path / "none.keras"))
    assert code == 2 and "cannot load the model" in err and "run.json" in err
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/empty.db")
    code, _, err = run(capsys, str(images), "--model-uri", "models:/nothing@champion")
    assert code == 2 and "cannot load the model: models:/nothing@champion" in err
