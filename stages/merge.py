"""Stage merge: the chosen images of both sources as one manifest, and every record turned down."""

from __future__ import annotations

import json

import pandas as pd

from coronet import paths
from coronet.errors import DataError, ParamsError, run_stage
from coronet.files import write_csv
from coronet.manifest import select
from coronet.params import class_names, load_params
from coronet.sources import covid, kermany


def main() -> int:
    params = load_params()
    cfg, classes, seed = params["merge"], class_names(params), params.integer("seed")
    counts = {label: cfg["counts"].integer(label, low=0) for label in classes}
    max_distance = cfg.integer("near_duplicate_max_distance", low=0)
    if not isinstance(cfg["views"], list) or not cfg["views"]:
        raise ParamsError(f"params.yaml: merge.views must be a list of views such as [PA, AP], got {cfg['views']!r}")
    archives = {name: paths.RAW / name / rec["file"]
                for name, rec in json.loads(paths.SOURCES.read_text())["archives"].items()}
    pool_covid, rejected_covid = covid.candidates(archives["covid"], cfg["views"], cfg.text("covid_finding"))
    pool_kermany, rejected_kermany = kermany.candidates(archives["kermany"])
    selection = select(pool_covid + pool_kermany, counts, classes, seed)
    selection.rejected[:0] = rejected_covid + rejected_kermany
    rejected = selection.rejected_frame()
    write_csv(paths.REJECTED, rejected)  # written first: it explains a failure below
    if missing := selection.missing_classes(classes):
        raise DataError(f"no usable image for class {'; '.join(missing)}; every record turned down is listed with "
                        f"its reason in {paths.REJECTED}. Check the archives (download) and merge.views / "
                        "merge.covid_finding.")
    selection.group_near_duplicates(max_distance)
    manifest = selection.manifest()
    write_csv(paths.MANIFEST, manifest)
    write_csv(paths.NEAR_DUPLICATES, selection.near_duplicates)
    write_csv(paths.IMAGE_STATS, selection.stats_frame())

    table = pd.crosstab(manifest["label"], manifest["source"]).reindex(classes, fill_value=0)
    print(table.to_string())
    print(f"{len(manifest)} images chosen; {len(rejected)} records rejected "
          f"({rejected['code'].value_counts().to_dict()}), see {paths.REJECTED}")
    pairs = selection.near_duplicates
    if len(pairs):
        across = int((pairs["label_a"] != pairs["label_b"]).sum())
        print(f"{len(pairs)} near-duplicate pair(s) (perceptual hash within {max_distance} bits), kept together by the "
              f"split; see {paths.NEAR_DUPLICATES}" + (f"; {across} pair(s) carry different labels" if across
                                                                  else ""))
    for label, (wanted, got) in selection.shortfall.items():
        print(f"note: {label}: {wanted} wanted, only {got} usable images exist; took all of them")
    return 0


if __name__ == "__main__":
    run_stage(main)
