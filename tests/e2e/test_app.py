"""End to end: the page (`coronet app`) as a real server on 127.0.0.1, driven with gradio_client, and once in a
real headless browser (Debian's chromium through its chromedriver; nothing downloaded at run time)."""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import CLASSES, VENV_BIN, free_port, mlflow_job_runners, run_tool, start_server, stop_server
from coronet.imaging import nuisance

pytestmark = pytest.mark.cost(100)  # seconds in make test (2 cores): the slowest files start first

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def page(pipeline, tmp_path_factory):
    """The app on the shared pipeline's model, from its project (so it finds the model's evaluation)."""
    folder = tmp_path_factory.mktemp("app")
    port = free_port()
    process = start_server([str(VENV_BIN / "coronet"), "app", "--port", str(port), "--max-images", "3"],
                           f"http://127.0.0.1:{port}/", folder / "app.log",
                           {**pipeline.env, "GRADIO_ANALYTICS_ENABLED": "False"}, timeout=240, cwd=pipeline.project)
    yield f"http://127.0.0.1:{port}/", folder, process
    stop_server(process)


def images(pipeline, folder: Path) -> dict[str, Path]:
    """A real-layout film of the Kermany twin as a user has it, the same film with a 15% white frame (what
    the border check looks for), a text file named .png and a DICOM without pixel data."""
    from conftest import make_dicom

    project = pipeline.project
    manifest = pd.read_csv(project / "data/interim/manifest.csv")
    row = manifest[manifest["source"] == "kermany"].iloc[0]
    with zipfile.ZipFile(project / row["archive"]) as z:
        data = z.read(row["original_path"])
    gray = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    paths = {"plain": folder / "plain.jpeg", "framed": folder / "framed.png", "text": folder / "notes.png",
             "dicom": folder / "empty.dcm"}
    paths["plain"].write_bytes(data)
    Image.fromarray(nuisance.frame(gray, 0.15, 255)).save(paths["framed"])
    paths["text"].write_text("not an image")
    paths["dicom"].write_bytes(make_dicom(None))
    return paths


def classify(url: str, files: list[Path], explain: str = "the predicted class"):
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    return client.predict([handle_file(str(f)) for f in files], explain, api_name="/classify")


def test_the_page_classifies_explains_and_checks_like_coronet_predict(page, pipeline, tmp_path, capsys):
    url, *_ = page
    files = images(pipeline, tmp_path)
    report, overlays, answers = classify(url, [files["plain"], files["framed"], files["text"]])
    by_file = {a["file"]: a for a in answers}
    assert list(by_file) == ["plain.jpeg", "framed.png", "notes.png"]
    # the same answer as coronet predict, from the same code
    from coronet.cli import main

    assert main(["predict", str(files["plain"]), str(files["framed"]), "--model",
                 str(pipeline.project / "models/coronet.keras"), "--format", "json"]) == 0
    expected = {Path(r["file"]).name: r for r in json.loads(capsys.readouterr().out)}
    for name in ("plain.jpeg", "framed.png"):
        for c in CLASSES:
            assert by_file[name][f"p_{c}"] == pytest.approx(expected[name][f"p_{c}"], abs=1e-6)  # 6 decimals
        assert by_file[name]["checks"] == expected[name]["checks"]
    # the input check fires on the framed copy and not on the film itself, and says what the stress tests found
    assert "uniform border" in by_file["framed.png"]["checks"] and "uniform border" not in by_file["plain.jpeg"]["checks"]
    stress = json.loads((pipeline.project / "metrics/stress.json").read_text())
    changed = stress["transforms"]["frame_median"]["0.2"]["flip_rate"]
    assert f"a 20% uniform border changed {changed:.0%} of its answers on {stress['images']} test images" in report
    from coronet.imaging.checks import BLIND_SPOTS

    assert BLIND_SPOTS in report  # what the checks cannot see, under every answer
    # a bad file gets its message; the others are answered
    assert by_file["notes.png"]["error"].startswith("not a recognised image format") and "Not classified" in report
    assert "Answer:" in report and "Grouped view" in report and "covid probability" in report
    # one Grad-CAM overlay per classified image, a real picture at a readable size
    assert len(overlays) == 2
    picture = Image.open(overlays[0]["image"])
    assert picture.mode == "RGB" and min(picture.size) >= 300 and "Grad-CAM of" in overlays[0]["caption"]


def test_a_picked_class_is_explained_and_limits_hold(page, pipeline, tmp_path):
    url, *_ = page
    files = images(pipeline, tmp_path)
    _, overlays, _ = classify(url, [files["plain"]], "covid")
    assert "Grad-CAM of covid" in overlays[0]["caption"]
    report, _, answers = classify(url, [files["dicom"], files["plain"], files["plain"], files["plain"]])
    assert "4 images were sent; the first 3 are classified" in report and len(answers) == 3  # --max-images 3
    assert answers[0]["error"] == "DICOM file has no pixel data"
    report, _, answers = classify(url, [files["plain"]])  # the server is still up after all that
    assert answers[0]["error"] == "" and answers[0]["predicted"] in CLASSES


def headless_chromium(profile: Path) -> object:
    """Debian's chromium through its chromedriver, headless, with nothing that calls out."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1280,2200"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="Debian's chromium and chromium-driver are not installed")
def test_make_ui_opens_the_experiment_on_its_training_runs(pipeline, tmp_path):
    """`make ui` opened the experiment on MLflow's GenAI overview (traces, tokens, "Detect Issues"),
    not on its runs. `coronet ui` (what `make ui` runs) prints the address that opens the training view."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    process = start_server([str(VENV_BIN / "coronet"), "ui", "--port", str(port)], f"http://127.0.0.1:{port}/health",
                           tmp_path / "ui.log", pipeline.env, timeout=120, cwd=pipeline.project)
    browser = headless_chromium(tmp_path / "chromium")
    try:
        assert not mlflow_job_runners(process)  # six Huey consumers, ~26 s of CPU at every start: not ours to pay
        url = re.search(r"MLflow UI: (\S+)", (tmp_path / "ui.log").read_text())[1]
        run_name = json.loads((pipeline.project / "models/run.json").read_text())["run_id"]
        import mlflow

        mlflow.set_tracking_uri(pipeline.store)
        run_name = mlflow.get_run(run_name).info.run_name
        browser.get(url)
        WebDriverWait(browser, 90).until(lambda b: run_name in b.find_element(By.TAG_NAME, "body").text)
        text = browser.find_element(By.TAG_NAME, "body").text
        assert "Runs" in text and "Detect Issues" not in text and "Traces\n0" not in text
    finally:
        browser.quit()
        stop_server(process)


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="Debian's chromium and chromium-driver are not installed")
def test_the_page_in_a_real_browser(page, pipeline, tmp_path):
    """Upload, wait for the answer, read the page as a person would, keep a screenshot."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    url, folder, _ = page
    files = images(pipeline, tmp_path)
    browser = headless_chromium(tmp_path / "chromium")
    try:
        browser.get(url)
        wait = WebDriverWait(browser, 120)
        upload = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]")))
        upload.send_keys(f"{files['framed']}\n{files['plain']}")
        wait.until(lambda b: "framed" in b.find_element(By.ID, "upload").text)  # shown as name + extension
        browser.find_element(By.ID, "classify").click()
        wait.until(lambda b: "Answer:" in b.find_element(By.ID, "report").text)
        text = browser.find_element(By.TAG_NAME, "body").text
        assert "research software, not a medical device" in text  # on the page, not hidden
        assert "Model: models/coronet.keras" in text and "Its test results: accuracy" in text
        # the header says what this model was trained on, built from its record; no zero-width interval
        assert re.search(r"Trained on \d+ SYNTHETIC images", text) and "mean nothing" in text
        assert "two public collections" not in text
        assert "100-100%" not in text and "0-0%" not in text
        assert "uniform border or padding" in text and "in this model's stress tests" in text
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#overlays img")) >= 2)
        # the whole overlay is shown: the picture is fitted into its box, never cropped to fill it
        fits = {browser.execute_script("return getComputedStyle(arguments[0]).objectFit", img)
                for img in browser.find_elements(By.CSS_SELECTOR, "#overlays img")}
        assert fits == {"contain"}, fits
        browser.save_screenshot(str(folder / "page.png"))
        assert Image.open(folder / "page.png").size[0] >= 1000
    finally:
        browser.quit()


def test_a_second_page_on_a_busy_port_is_one_error_line(page, pipeline):
    """`coronet app` on a port in use was a traceback, and then came after TensorFlow, Gradio and the model had
    loaded (13 s here): it is said before anything loads (a model that does not exist is never reached)."""
    url, *_ = page
    port = url.rstrip("/").rsplit(":", 1)[1]
    done = run_tool(pipeline.project, "coronet", "app", "--port", port, "--model", "no-such-model.keras",
                    env=pipeline.env, check=False, timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(errors) == 1 and f"cannot listen on 127.0.0.1:{port}" in errors[0]


def test_uploads_stay_private_go_once_answered_and_the_rest_when_the_page_stops(page, pipeline, tmp_path):
    """Uploads and their Grad-CAM overlays stayed in /tmp/gradio after the page stopped, the overlays readable by
    every user (0644 in 0755 folders); any number of files per request were stored (200 were), and closing the
    terminal (SIGHUP) left them all. The last test of this module: it stops the page."""
    import os
    import signal
    import stat

    url, folder, process = page
    files = images(pipeline, tmp_path)
    copies = []
    for k in range(5):  # over the page's --max-images 3
        copies.append(tmp_path / f"copy{k}.jpeg")
        copies[-1].write_bytes(files["plain"].read_bytes() + bytes([k]))  # distinct files, the same film
    report, _, answers = classify(url, copies)
    assert len(answers) == 3 and "5 images were sent; the first 3 are classified" in report
    said = re.search(r"Uploads and overlays: (\S+)", (folder / "app.log").read_text())
    uploads = Path(said[1])
    kept = [p for p in uploads.rglob("*")]
    assert stat.S_IMODE(uploads.stat().st_mode) == 0o700 and any(p.is_file() for p in kept)  # the overlays
    assert not [p for p in kept if p.name.startswith("copy")], kept  # every upload deleted once answered
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in kept), [
        (p, oct(p.stat().st_mode)) for p in kept if p.stat().st_mode & 0o077]
    process.send_signal(signal.SIGHUP)  # the terminal it ran in was closed
    assert process.wait(timeout=60) == 0
    assert not uploads.exists() and not os.path.exists("/tmp/gradio/" + files["plain"].name)
