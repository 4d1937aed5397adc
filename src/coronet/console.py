"""What the console shows and takes: progress bars only where a person watches; the command-line number types."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def interactive() -> bool:
    """True when a person watches stderr: progress bars then redraw in place; in a log they would leave
    a line of carriage returns and escapes per update, so they are left out there."""
    return sys.stderr.isatty()


def progress(**options: Any) -> Any:
    """A tqdm progress bar on stderr, shown only where a person watches (:func:`interactive`)."""
    from tqdm import tqdm

    return tqdm(disable=not interactive(), **options)


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (a usage error, exit 2, otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def positive_number(text: str) -> float:
    """argparse type: a number above 0 (a usage error, exit 2, otherwise)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return value
