"""Stage download: the two source archives into data/raw/, with their size and sha256 recorded.

Each archive is committed on its own (and kept in data/raw/.downloads/), so a failure of the second
never costs the first.
"""

from __future__ import annotations

from coronet import paths, synthetic
from coronet.download import Fetched, check_archive, fetch_archive, resolve_url
from coronet.errors import run_stage
from coronet.files import atomic_dir, repository_root, sha256_file, write_json
from coronet.params import load_params

# In the real repository also under `dvc exp run --temp`, whose copy is deleted afterwards.
CACHE = repository_root() / paths.RAW / ".downloads"
SOURCES = ("covid", "kermany")


def main() -> int:
    cfg = load_params()["download"]
    source = cfg.choice("source", ("upstream", "synthetic"))
    max_bytes = int(cfg.number("max_archive_gb", 0, inclusive=False) * 1e9)
    records: dict[str, dict[str, object]] = {}
    if source == "synthetic":
        syn = cfg["synthetic"]
        seed, per_class, size = syn.integer("seed"), syn.integer("images_per_class", 1), syn.integer("image_size", 32)
        with atomic_dir(paths.RAW / "covid") as covid_dir, atomic_dir(paths.RAW / "kermany") as kermany_dir:
            targets = {"covid": covid_dir / cfg["covid"].text("filename"),
                       "kermany": kermany_dir / cfg["kermany"].text("filename")}
            synthetic.write_archives(targets["covid"], targets["kermany"], seed, per_class, size)
            for name, path in targets.items():
                url = f"synthetic://{name}?seed={seed}&images_per_class={per_class}"
                records[name] = Fetched(url, path, path.stat().st_size, sha256_file(path)).record()
                records[name]["entries"] = check_archive(path, max_bytes)
    else:
        options = {"retries": cfg.integer("retries", 0), "timeout_s": cfg.number("timeout_s", 0, inclusive=False)}
        for name in SOURCES:
            src = cfg[name]
            url = resolve_url(src.text("url"), src.text("filename"), cfg.text("mirror"))
            with atomic_dir(paths.RAW / name) as folder:
                fetched, entries = fetch_archive(url, folder / src.text("filename"), sha256=src.text("sha256"),
                                                 max_bytes=max_bytes, cache_dir=CACHE, **options)
            records[name] = {**fetched.record(), "entries": entries}
            if not src.text("sha256"):
                print(f"{name}: no sha256 pinned; to pin this download set download.{name}.sha256: {fetched.sha256}")
    for name, record in records.items():
        print(f"{name}: {record['file']} {record['size']:,} bytes, {record['entries']} entries, "
              f"sha256 {record['sha256']}")
    write_json(paths.SOURCES, {"source": source, "archives": records})
    return 0


if __name__ == "__main__":
    run_stage(main)
