"""End to end: training interrupted by Ctrl-C says so in one line, and the next run continues from the last
checkpoint to the very model an uninterrupted run makes (the shared pipeline's, bit for bit, on CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest

from conftest import VENV_BIN, run_tool

pytestmark = pytest.mark.cost(80)  # seconds in make test (2 cores): the slowest files start first


def test_ctrl_c_mid_training_then_resume_gives_the_uninterrupted_model(pipeline, pipeline_copy):
    project, env = pipeline_copy.project, pipeline_copy.env
    state = project / "models/checkpoints/state.json"
    # Ctrl-C as a terminal delivers it: a suite started in the background (`make test &`) inherits SIGINT ignored,
    # and Python then installs no KeyboardInterrupt handler in the child.
    first = subprocess.Popen([str(VENV_BIN / "python"), "stages/train.py"], cwd=project, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, **env},
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not (state.is_file() and json.loads(state.read_text())["epoch"] >= 1):
        assert first.poll() is None and time.monotonic() < deadline, "training ended before its first checkpoint"
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)  # what Ctrl-C sends
    _, err = first.communicate(timeout=120)
    # a full KeyboardInterrupt traceback before; now one line saying what was kept.
    assert first.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert [line for line in err.splitlines() if line.startswith("interrupted")] == [
        "interrupted: the newest saved epoch is in models/checkpoints (train.checkpoint_every_s); `dvc repro` "
        "continues from there"]
    done = json.loads(state.read_text())["epoch"]
    assert done == 1

    second = run_tool(project, "python", "stages/train.py", env=env)
    assert f"resuming from the checkpoint of epoch {done}" in second.stdout
    assert list(pd.read_csv(project / "models/history.csv")["epoch"]) == [1, 2]
    assert (project / "models/coronet.keras").is_file() and not state.exists()

    # The shared pipeline trained the same two epochs without a break: the resumed run continued the
    # shuffling, augmentation and dropout streams where the interrupted one stopped.
    import keras

    resumed = keras.models.load_model(project / "models/coronet.keras", safe_mode=True, compile=False)
    whole = keras.models.load_model(pipeline.project / "models/coronet.keras", safe_mode=True, compile=False)
    for x, y in zip(resumed.weights, whole.weights, strict=True):
        np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=x.path)
