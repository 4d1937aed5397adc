"""Stage download: the two source archives into data/raw/, with their size and sha256 recorded."""

from __future__ import annotations

import sys
from pathlib import Path

from coronet import synthetic
from coronet.download import DownloadError, Fetched, check_archive, fetch, resolve_url
from coronet.files import atomic_dir, sha256_file, write_json
from coronet.params import load_params

RAW = Path("data/raw")
SOURCES = ("covid", "kermany")


def main() -> int:
    cfg = load_params()["download"]
    max_bytes = int(float(cfg["max_archive_gb"]) * 1e9)
    records: dict[str, dict[str, object]] = {}
    with atomic_dir(RAW / "covid") as covid_dir, atomic_dir(RAW / "kermany") as kermany_dir:
        targets = {"covid": covid_dir / cfg["covid"]["filename"], "kermany": kermany_dir / cfg["kermany"]["filename"]}
        if cfg["source"] == "synthetic":
            syn = cfg["synthetic"]
            seed = int(syn["seed"])
            synthetic.write_archives(targets["covid"], targets["kermany"], seed, int(syn["images_per_class"]),
                                     int(syn["image_size"]))
            for name, path in targets.items():
                url = f"synthetic://{name}?seed={seed}&images_per_class={syn['images_per_class']}"
                fetched = Fetched(url, path, path.stat().st_size, sha256_file(path))
                records[name] = fetched.record()
        elif cfg["source"] == "upstream":
            for name in SOURCES:
                src = cfg[name]
                url = resolve_url(src["url"], src["filename"], cfg.get("mirror", ""))
                try:
                    fetched = fetch(url, targets[name], sha256=src.get("sha256", ""), partial_dir=RAW / ".partial",
                                    retries=int(cfg["retries"]), timeout_s=float(cfg["timeout_s"]))
                except DownloadError as exc:
                    print(f"download failed: {exc}", file=sys.stderr)
                    raise SystemExit(1) from None
                records[name] = fetched.record()
                if not src.get("sha256"):
                    print(f"{name}: no sha256 pinned; to pin this download set download.{name}.sha256: "
                          f"{fetched.sha256}")
        else:
            raise SystemExit(f"download.source must be 'upstream' or 'synthetic', got {cfg['source']!r}")
        for name, path in targets.items():
            entries = check_archive(path, max_bytes)
            records[name]["entries"] = entries
            print(f"{name}: {path.name} {records[name]['size']:,} bytes, {entries} entries, "
                  f"sha256 {records[name]['sha256']}")
    write_json(RAW / "sources.json", {"source": cfg["source"], "archives": records})
    return 0


if __name__ == "__main__":
    sys.exit(main())
