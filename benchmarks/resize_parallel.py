"""Resize throughput: one process against one per core on the same originals, and peak memory.

Run: .venv/bin/python benchmarks/resize_parallel.py [--images 160] [--side 1600]
The originals are Kermany-sized grayscale JPEGs (about 1600 px) made here, so no data is needed.
Peak memory is the largest summed RSS of the process tree, sampled every 20 ms; it is measured for N
and 2N images to show it does not grow with the number of images.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
from PIL import Image

from coronet.data.resize import resize_all


def make_archive(path: Path, count: int, side: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (side, int(side * 1.2)), dtype=np.uint8)
    rows = []
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(count):
            buffer = io.BytesIO()
            Image.fromarray(np.roll(base, i * 7, axis=1)).save(buffer, format="JPEG", quality=90)
            archive.writestr(f"img{i}.jpeg", buffer.getvalue())
            rows.append({"id": f"img{i}", "archive": str(path), "original_path": f"img{i}.jpeg"})
    return pd.DataFrame(rows)


class PeakMemory:
    def __init__(self) -> None:
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(0.02)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(manifest: pd.DataFrame, workers: int, out: Path) -> tuple[float, float]:
    out.mkdir(parents=True, exist_ok=True)
    with PeakMemory() as memory:
        start = time.perf_counter()
        resize_all(manifest, out, 224, "stretch", workers)
        elapsed = time.perf_counter() - start
    return elapsed, memory.peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--side", type=int, default=1600)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        small = make_archive(root / "a.zip", args.images, args.side)
        large = make_archive(root / "b.zip", args.images * 2, args.side)
        t1, m1 = timed(small, 1, root / "o1")
        tn, mn = timed(small, cores, root / "on")
        _tn2, mn2 = timed(large, cores, root / "on2")
    print(f"{args.images} images of {args.side} x {int(args.side * 1.2)} px -> 224 px, {cores} cores")
    print(f"single process : {t1:6.2f} s  {args.images / t1:6.1f} img/s  peak RSS {m1:6.0f} MiB")
    print(f"{cores} workers      : {tn:6.2f} s  {args.images / tn:6.1f} img/s  peak RSS {mn:6.0f} MiB")
    print(f"speed-up       : {t1 / tn:.2f}x (goal >= 1.8x on 2 cores)")
    print(f"{2 * args.images} images, {cores} workers: peak RSS {mn2:.0f} MiB (vs {mn:.0f} MiB for {args.images})")


if __name__ == "__main__":
    main()
