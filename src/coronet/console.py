"""What the console shows and takes: progress bars only where a person watches; the command-line number types;
whether a server can listen on a port."""

from __future__ import annotations

import argparse
import math
import socket
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


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` now: asked before a server loads anything, so a busy port
    is said at once."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True
