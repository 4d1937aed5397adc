"""Stage merge: the chosen images of every source as one manifest, and every record turned down."""

from __future__ import annotations

import pandas as pd

from coronet import paths
from coronet.data import sources
from coronet.data.manifest import extract_chosen, select
from coronet.errors import DataError, run_stage
from coronet.files import write_csv
from coronet.params import MergeParams, load_params
from coronet.records import SourcesRecord


def main() -> int:
    cfg = MergeParams.parse(load_params())
    downloaded = SourcesRecord.read(paths.SOURCES)
    archives = downloaded.archives
    sources.check_roles(cfg.sources, [*archives, *downloaded.off])
    pool, rejected_by_sources = [], []
    for name, record in archives.items():
        found, turned_down = sources.get(name).candidates(paths.ARCHIVES / record["file"], cfg)
        pool += [candidate.in_role(cfg.source(name).role) for candidate in found]
        rejected_by_sources += turned_down
    selection = select(extract_chosen(pool, paths.EXTRACTED), cfg)
    selection.rejected[:0] = rejected_by_sources
    selection.group_near_duplicates(cfg.near_duplicate_max_distance)
    selection.keep_apart(cfg.controls.role)
    rejected = selection.rejected_frame()
    write_csv(paths.REJECTED, rejected)  # written first: it explains a failure below
    external = {name for name in archives if cfg.source(name).role == "external"}
    if missing := selection.missing_classes(cfg.classes, external):
        raise DataError(f"no usable image for class {'; '.join(missing)}; every record turned down is listed with "
                        f"its reason in {paths.REJECTED}. Check the archives (download) and merge.views / "
                        "merge.covid_finding.")
    manifest = selection.manifest()
    write_csv(paths.MANIFEST, manifest)
    write_csv(paths.NEAR_DUPLICATES, selection.near_duplicates)
    write_csv(paths.IMAGE_STATS, selection.stats_frame())

    table = pd.crosstab(manifest["label"].replace("", "(no class)"), [manifest["cohort"], manifest["source"]])
    print(table.to_string())
    print(f"{len(manifest)} images chosen; {len(rejected)} records rejected "
          f"({rejected['code'].value_counts().to_dict()}), see {paths.REJECTED}")
    pairs = selection.near_duplicates
    if len(pairs):
        across = int((pairs["label_a"] != pairs["label_b"]).sum())
        print(f"{len(pairs)} near-duplicate pair(s) (perceptual hash within {cfg.near_duplicate_max_distance} bits), "
              f"kept together by the split; see {paths.NEAR_DUPLICATES}"
              + (f"; {across} pair(s) carry different labels" if across else ""))
    for label, (wanted, got) in selection.shortfall.items():
        print(f"note: {label}: {wanted} wanted, only {got} usable images exist; took all of them")
    return 0


if __name__ == "__main__":
    run_stage(main)
