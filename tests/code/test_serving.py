"""Code tier: the served MLflow model answers bad rows one by one, in batches, within its request cap."""

from __future__ import annotations

import base64

import pandas as pd
import pytest

from conftest import encoded, noise


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


def test_a_page_sweeps_the_upload_folders_of_pages_that_are_gone(tmp_path):
    """A page killed with kill -9 (or a crash) left patients' uploads in its folder, and later pages neither
    removed nor mentioned them."""
    import os
    import subprocess
    import sys

    from coronet.serving.app import FOLDER_PREFIX, sweep_orphans

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f"{FOLDER_PREFIX}{int(gone.stdout)}-abc"
    running = tmp_path / f"{FOLDER_PREFIX}{os.getpid()}-def"  # a page still running: its folder stays
    other = tmp_path / "coronet-app-notapid"
    for folder in (orphan, running, other):
        (folder / "upload").mkdir(parents=True)
        (folder / "upload" / "film.png").write_bytes(b"x")
    assert sweep_orphans(tmp_path) == 1
    assert not orphan.exists() and running.exists() and other.exists()
