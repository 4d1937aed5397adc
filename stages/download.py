"""Stage download: each source's files (an archive, or a label file and its parts) into data/raw/archives/,
with their sizes and sha256 recorded; a source switched off downloads nothing.

Each file is committed on its own (and kept in data/raw/.downloads/), so a failure of the second never costs
the first.
"""

from __future__ import annotations

import contextlib

from coronet import paths
from coronet.data import sources
from coronet.data.archives import UnsafeArchiveError, check_archive, is_tar, list_tar, member_list
from coronet.data.download import DownloadCache, Fetched, fetch, resolve_url
from coronet.data.phantom import check_drawable
from coronet.errors import run_stage
from coronet.files import atomic_path, repository_root, sha256_file
from coronet.params import DownloadParams, load_params
from coronet.records import SourcesRecord

# In the real repository also under `dvc exp run --temp`, whose copy is deleted afterwards.
CACHE = repository_root() / paths.RAW / ".downloads"


def main() -> int:
    cfg = DownloadParams.parse(load_params())
    registry = {name: sources.get(name) for name in [*cfg.archives, *cfg.off]}
    paths.ARCHIVES.mkdir(parents=True, exist_ok=True)
    wanted = {paths.ARCHIVES / f.filename for a in cfg.archives.values() for f in a.files}
    wanted |= {member_list(path) for path in wanted if is_tar(path)}
    for stale in set(paths.ARCHIVES.iterdir()) - wanted:
        stale.unlink()  # a file no params name any more (a source switched off, a part dropped)
    records: dict[str, dict[str, object]] = {}
    for name, archive in cfg.archives.items():
        targets = [paths.ARCHIVES / f.filename for f in archive.files]
        if cfg.source == "synthetic":
            check_drawable(cfg.classes)
            syn = cfg.synthetic
            with contextlib.ExitStack() as stack:
                tmps = [stack.enter_context(atomic_path(t, suffix="".join(t.suffixes))) for t in targets]
                if archive.parts:
                    registry[name].write_synthetic(tmps[0], syn, cfg.classes, parts=tmps[1:])
                else:
                    registry[name].write_synthetic(tmps[0], syn, cfg.classes)
            url = f"synthetic://{name}?seed={syn.seed}&images_per_class={syn.images_per_class}"
            fetched = [Fetched(f"{url}&file={t.name}", t, t.stat().st_size, sha256_file(t)) for t in targets]
        else:
            fetched = [fetch(resolve_url(f.url, f.filename, cfg.mirror), target, sha256=f.sha256, cache_dir=CACHE,
                             retries=cfg.retries, timeout_s=cfg.timeout_s) for f, target in zip(archive.files, targets,
                                                                                                strict=True)]
        files = [{**got.record(), "entries": checked(got, cfg.max_archive_bytes)} for got in fetched]
        records[name] = {**files[0], **({"parts": files[1:]} if archive.parts else {})}
        for spec, got in zip(archive.files, fetched, strict=True):
            if cfg.source != "synthetic" and not spec.sha256:
                key = "sha256" if spec is archive else f"parts[{archive.parts.index(spec)}].sha256"
                print(f"{name}: no sha256 pinned; to pin this download set download.archives.{name}.{key}: "
                      f"{got.sha256}")
    for name, record in records.items():
        for file in [record, *record.get("parts", [])]:
            print(f"{name}: {file['file']} {file['size']:,} bytes, {file['entries']} entries, sha256 {file['sha256']}")
    if cfg.off:
        print(f"switched off (download.archives.<name>.enabled: false), nothing downloaded: {', '.join(cfg.off)}")
    SourcesRecord(cfg.source, records, list(cfg.off)).write(paths.SOURCES)
    return 0


def checked(got: Fetched, max_bytes: int) -> int:
    """The file's entry count once it passed its checks; a tar part's file names are kept beside it (merge
    reads them instead of the part). A file that fails them leaves the download cache and the archives."""
    path = got.path
    try:
        if not is_tar(path):
            return check_archive(path, max_bytes)
        names, repeated = list_tar(path, max_bytes)
    except UnsafeArchiveError:
        DownloadCache(CACHE).discard(got.url, path.name)
        path.unlink(missing_ok=True)
        raise
    if repeated:
        print(f"warning: {path.name} holds {len(repeated)} file(s) more than once (first: {repeated[0]}): the first "
              "copy of each is used")
    with atomic_path(member_list(path)) as tmp:
        tmp.write_text("".join(f"{n}\n" for n in names))
    return len(names)


if __name__ == "__main__":
    run_stage(main)
