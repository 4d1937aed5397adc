"""Stage download: each source's archive into data/raw/archives/, with its size and sha256 recorded.

Each archive is committed on its own (and kept in data/raw/.downloads/), so a failure of the second
never costs the first.
"""

from __future__ import annotations

from coronet import paths
from coronet.data import sources
from coronet.data.archives import check_archive
from coronet.data.download import Fetched, fetch_archive, resolve_url
from coronet.data.phantom import check_drawable
from coronet.errors import run_stage
from coronet.files import atomic_path, repository_root, sha256_file
from coronet.params import DownloadParams, load_params
from coronet.records import SourcesRecord

# In the real repository also under `dvc exp run --temp`, whose copy is deleted afterwards.
CACHE = repository_root() / paths.RAW / ".downloads"


def main() -> int:
    cfg = DownloadParams.parse(load_params())
    registry = {name: sources.get(name) for name in cfg.archives}
    paths.ARCHIVES.mkdir(parents=True, exist_ok=True)
    for stale in set(paths.ARCHIVES.iterdir()) - {paths.ARCHIVES / a.filename for a in cfg.archives.values()}:
        stale.unlink()  # an archive no params name any more
    records: dict[str, dict[str, object]] = {}
    for name, archive in cfg.archives.items():
        target = paths.ARCHIVES / archive.filename
        if cfg.source == "synthetic":
            check_drawable(cfg.classes)
            syn = cfg.synthetic
            with atomic_path(target, suffix=".zip") as tmp:
                registry[name].write_synthetic(tmp, syn, cfg.classes)
            url = f"synthetic://{name}?seed={syn.seed}&images_per_class={syn.images_per_class}"
            records[name] = Fetched(url, target, target.stat().st_size, sha256_file(target)).record()
            records[name]["entries"] = check_archive(target, cfg.max_archive_bytes)
            continue
        url = resolve_url(archive.url, archive.filename, cfg.mirror)
        fetched, entries = fetch_archive(url, target, sha256=archive.sha256, max_bytes=cfg.max_archive_bytes,
                                         cache_dir=CACHE, retries=cfg.retries, timeout_s=cfg.timeout_s)
        records[name] = {**fetched.record(), "entries": entries}
        if not archive.sha256:
            print(f"{name}: no sha256 pinned; to pin this download set download.archives.{name}.sha256: "
                  f"{fetched.sha256}")
    for name, record in records.items():
        print(f"{name}: {record['file']} {record['size']:,} bytes, {record['entries']} entries, "
              f"sha256 {record['sha256']}")
    SourcesRecord(cfg.source, records).write(paths.SOURCES)
    return 0


if __name__ == "__main__":
    run_stage(main)
