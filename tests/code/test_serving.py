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
