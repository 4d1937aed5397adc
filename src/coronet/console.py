"""What the console shows and takes: progress bars only where a person watches; the command-line number types."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

STAGE_TIMES = "CORONET_STAGE_TIMES"  # names a file each stage adds its wall time to (the demo's time table)


def interactive() -> bool:
    """True when a person watches stderr: progress bars then redraw in place; in a log they would leave
    a line of carriage returns and escapes per update, so they are left out there."""
    return sys.stderr.isatty()


def progress(**options: Any) -> Any:
    """A tqdm progress bar on stderr, shown only where a person watches (:func:`interactive`)."""
    from tqdm import tqdm

    return tqdm(disable=not interactive(), **options)


def _checked(text: str, cast: type, ok: Any, wanted: str) -> Any:
    """argparse type: ``cast(text)`` if ``ok`` of it, else a usage error (exit 2) saying what was wanted."""
    try:
        value = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole number' if cast is int else 'number'}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _checked(text, int, lambda v: v >= 1, "at least 1")


def probability(text: str) -> float:
    return _checked(text, float, lambda v: 0 <= v <= 1, "in [0, 1]")


def positive_number(text: str) -> float:
    return _checked(text, float, lambda v: 0 < v < math.inf, "a finite number above 0")


def port(text: str) -> int:
    """A TCP port number."""
    return _checked(text, int, lambda v: 1 <= v <= 65535, "a port number from 1 to 65535")


def note_stage_time() -> None:
    """Adds this stage's wall time since its process started (interpreter and imports included) to the file
    ``$CORONET_STAGE_TIMES`` names, one JSON line, when it names one."""
    import psutil

    target = os.environ.get(STAGE_TIMES)
    if target:
        seconds = time.time() - psutil.Process().create_time()
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps({"stage": Path(sys.argv[0]).stem, "seconds": round(seconds, 1)}) + "\n")


def stage_time_table(path: Path, total: float) -> str:
    """The stages' times from ``path`` (as :func:`note_stage_time` wrote them), each with its share of
    ``total``, and what DVC took around them."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    around = max(0.0, total - sum(r["seconds"] for r in rows))
    rows.append({"stage": "dvc (checks, hashes, cache, git)", "seconds": around})
    lines = [f"{'stage':<34}{'seconds':>8}{'share':>7}"]
    lines += [f"{r['stage']:<34}{r['seconds']:>8.0f}{r['seconds'] / total:>7.0%}" for r in rows]
    return "\n".join([*lines, f"{'total':<34}{total:>8.0f}"])
