"""What a user can cause and fix (bad params, data, URLs, files) versus bugs in our code.

Stages and the CLI turn a :class:`UserError` into one ``error: ...`` line and a non-zero exit; any
other exception is a bug and keeps its traceback. ``CORONET_DEBUG=1`` shows the traceback always.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


class UserError(Exception):
    """A failure the user caused and can fix; the message says what happened and what to do."""


class ParamsError(UserError):
    """A params.yaml value is missing or not of the kind the stage needs."""


class DataError(UserError):
    """The data cannot give what the params ask for (a class with no usable image, too few patients)."""


def debug() -> bool:
    return os.environ.get("CORONET_DEBUG", "").lower() not in {"", "0", "false", "no"}


INTERRUPTED = 130  # what a shell reports for a command ended by Ctrl-C
STAGE_TIMES = "CORONET_STAGE_TIMES"  # names a file each stage adds its wall time to (make demo's time table)


def note_stage_time() -> None:
    """Adds this stage's wall time since its process started (interpreter and imports included) to the file
    ``$CORONET_STAGE_TIMES`` names, one JSON line, when it names one."""
    import json
    import time
    from pathlib import Path

    import psutil

    if target := os.environ.get(STAGE_TIMES):
        seconds = time.time() - psutil.Process().create_time()
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps({"stage": Path(sys.argv[0]).stem, "seconds": round(seconds, 1)}) + "\n")


def run_stage(main: Callable[[], int], interrupted: str = "") -> None:
    """Runs a stage's ``main`` and exits with its code; a UserError becomes one ``error:`` line, exit 1;
    Ctrl-C one ``interrupted:`` line (with ``interrupted``: what was kept), exit 130."""
    try:
        code = main()
    except UserError as exc:
        if debug():
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        if debug():
            raise
        print(f"interrupted{': ' + interrupted if interrupted else ''}", file=sys.stderr)
        sys.exit(INTERRUPTED)
    if code == 0:
        note_stage_time()
    sys.exit(code)
