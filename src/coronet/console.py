"""What the console shows: TensorFlow imported without its C++ start-up lines.

TensorFlow 2.21 logs through absl before absl is set up ("WARNING: All log messages before
absl::InitializeLog() ...", "oneDNN custom operations are on ..."), and TF_CPP_MIN_LOG_LEVEL does not
reach those lines. Nothing in them is for our users to act on, so the import runs with the process's
stderr pointed at /dev/null; Python errors raised by the import still show, after stderr is back.
"""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
