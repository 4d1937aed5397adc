"""NIH's tar.gz parts: the download stage's check-and-list pass, and merge's copy of the chosen films in one
pass, against unpacking the whole part (what a naive reader does): time, MB/s, peak memory, disk.

Run: .venv/bin/python benchmarks/tar_parts.py [--films 600] [--film-kb 512] [--chosen 0.05]
The part is made here (random bytes as films: a tar.gz part is read the same way whatever its members hold,
and random bytes do not compress, like PNGs). Each way runs in a fresh process, so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

WAYS = {
    "list (download's check pass)": "from coronet.data.archives import list_tar\n"
                                    "names, _ = list_tar(part, 10**12)\nout = len(names)",
    "copy chosen (merge, one pass)": "import zipfile\nfrom coronet.data.archives import copy_tar_members\n"
                                     "with zipfile.ZipFile(target / 'extracted.zip', 'w') as z:\n"
                                     "    out = len(copy_tar_members(part, chosen, z, 'p/'))",
    "unpack whole part (naive)": "import tarfile\nwith tarfile.open(part) as tar:\n"
                                 "    tar.extractall(target / 'all', filter='data')\nout = len(chosen)",
}


def make_part(path: Path, films: int, size: int) -> list[str]:
    rng = __import__("numpy").random.default_rng(0)
    names = []
    with gzip.open(path, "wb", compresslevel=1) as raw, tarfile.open(fileobj=raw, mode="w|") as tar:
        for k in range(films):
            data = rng.integers(0, 256, size, dtype="uint8").tobytes()
            info = tarfile.TarInfo(f"images/{k:08d}_000.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            names.append(info.name)
    return names


def run_way(code: str, part: Path, chosen: list[str], target: Path) -> dict[str, float]:
    script = ("import json, resource, sys, time\nfrom pathlib import Path\n"
              f"part, target = Path({str(part)!r}), Path({str(target)!r})\nchosen = set({chosen!r})\n"
              "start = time.perf_counter()\n" + code + "\n"
              "print(json.dumps({'seconds': time.perf_counter() - start, 'out': out,"
              " 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["disk_mb"] = sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--films", type=int, default=600)
    parser.add_argument("--film-kb", type=int, default=512)
    parser.add_argument("--chosen", type=float, default=0.05, help="share of the part's films merge chooses")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        part = Path(folder) / "images_001.tar.gz"
        names = make_part(part, args.films, args.film_kb * 1024)
        size_mb = part.stat().st_size / 2**20
        chosen = names[:: max(1, round(1 / args.chosen))]
        print(f"part: {args.films} films of {args.film_kb} kB, {size_mb:.0f} MB gzipped; {len(chosen)} chosen")
        print(f"{'way':<32}{'seconds':>9}{'MB/s':>8}{'peak RSS MB':>13}{'disk MB':>9}")
        results = {}
        for name, code in WAYS.items():
            target = Path(folder) / "out"
            target.mkdir()
            results[name] = r = run_way(code, part, chosen, target)
            print(f"{name:<32}{r['seconds']:>9.1f}{size_mb / r['seconds']:>8.0f}{r['peak_rss_mb']:>13.0f}"
                  f"{r['disk_mb']:>9.1f}")
            shutil.rmtree(target)
        copy, naive = results["copy chosen (merge, one pass)"], results["unpack whole part (naive)"]
        print(f"copy chosen / unpack whole: time {copy['seconds'] / naive['seconds']:.2f}, disk "
              f"{copy['disk_mb'] / naive['disk_mb']:.3f} (cpu count {os.cpu_count()})")


if __name__ == "__main__":
    main()
