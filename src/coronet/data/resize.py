"""Decoding every chosen original once and writing it as a square 8-bit grayscale PNG, in parallel."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from coronet.console import progress
from coronet.data.archives import ArchiveReader
from coronet.files import sha256_bytes
from coronet.imaging.decode import decode_grayscale, fit_square, to_png_bytes

_reader = ArchiveReader()  # per worker process: each opens the archives once


def _fresh_reader() -> None:
    """Forked workers must not share the parent's open archives (one file offset for all)."""
    global _reader
    _reader = ArchiveReader()


def resize_one(task: tuple[str, str, str, str, int, str]) -> dict[str, str]:
    image_id, archive, member, out_dir, size, mode = task
    png = to_png_bytes(fit_square(decode_grayscale(_reader.read(archive, member)), size, mode))
    path = Path(out_dir) / f"{image_id}.png"
    path.write_bytes(png)
    return {"id": image_id, "png_sha256": sha256_bytes(png)}


def resize_all(manifest: pd.DataFrame, out_dir: Path, size: int, mode: str, workers: int = 0) -> pd.DataFrame:
    """Writes ``<out_dir>/<id>.png`` for every manifest row; returns id -> PNG sha256.

    Workers receive small tasks and send back small rows, so memory stays flat however many images.
    """
    workers = workers or os.cpu_count() or 1
    tasks = [(r.id, r.archive, r.original_path, str(out_dir), size, mode) for r in manifest.itertuples()]
    bar = progress(total=len(tasks), desc=f"resize {size}px", unit="img")
    if workers == 1:
        rows = []
        for task in tasks:
            rows.append(resize_one(task))
            bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=_fresh_reader) as pool:
            rows = []
            for row in pool.map(resize_one, tasks, chunksize=8):
                rows.append(row)
                bar.update(1)
    bar.close()
    return pd.DataFrame(rows, columns=["id", "png_sha256"])
