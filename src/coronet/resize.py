"""Decoding every chosen original once and writing it as a square 8-bit grayscale PNG, in parallel."""

from __future__ import annotations

import os
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from coronet.files import sha256_bytes
from coronet.images import decode_grayscale, fit_square, to_png_bytes

_archives: dict[str, zipfile.ZipFile] = {}  # per worker process: each opens the archives once


def _read(archive: str, member: str) -> bytes:
    if archive not in _archives:
        _archives[archive] = zipfile.ZipFile(archive)
    return _archives[archive].read(member)


def resize_one(task: tuple[str, str, str, str, int, str]) -> dict[str, str]:
    image_id, archive, member, out_dir, size, mode = task
    png = to_png_bytes(fit_square(decode_grayscale(_read(archive, member)), size, mode))
    path = Path(out_dir) / f"{image_id}.png"
    path.write_bytes(png)
    return {"id": image_id, "png_sha256": sha256_bytes(png)}


def resize_all(manifest: pd.DataFrame, out_dir: Path, size: int, mode: str, workers: int = 0) -> pd.DataFrame:
    """Writes ``<out_dir>/<id>.png`` for every manifest row; returns id -> PNG sha256.

    Workers receive small tasks and send back small rows, so memory stays flat however many images.
    """
    workers = workers or os.cpu_count() or 1
    tasks = [(r.id, r.archive, r.original_path, str(out_dir), size, mode) for r in manifest.itertuples()]
    bar = dict(total=len(tasks), desc=f"resize {size}px", unit="img")
    if workers == 1:
        rows = [resize_one(t) for t in tqdm(tasks, **bar)]
    else:
        # Forked workers must not share the parent's open archives (one file offset for all).
        with ProcessPoolExecutor(max_workers=workers, initializer=_archives.clear) as pool:
            rows = list(tqdm(pool.map(resize_one, tasks, chunksize=8), **bar))
    return pd.DataFrame(rows, columns=["id", "png_sha256"])
