"""What the console shows: progress bars only where a person watches."""

from __future__ import annotations

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
