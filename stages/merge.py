"""Stage merge: the chosen images of both sources as one manifest, and every record turned down."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from coronet.files import write_csv
from coronet.manifest import select
from coronet.params import class_names, load_params
from coronet.sources import covid, kermany

RAW = Path("data/raw")
INTERIM = Path("data/interim")


def main() -> int:
    params = load_params()
    cfg, classes, seed = params["merge"], class_names(params), int(params["seed"])
    archives = {name: RAW / name / rec["file"]
                for name, rec in json.loads((RAW / "sources.json").read_text())["archives"].items()}
    pool_covid, rejected_covid = covid.candidates(archives["covid"], cfg["views"], cfg["covid_finding"])
    pool_kermany, rejected_kermany = kermany.candidates(archives["kermany"])
    selection = select(pool_covid + pool_kermany, cfg["counts"], classes, seed)
    selection.rejected[:0] = rejected_covid + rejected_kermany
    manifest = selection.manifest()
    write_csv(INTERIM / "manifest.csv", manifest)
    rejected = selection.rejected_frame()
    write_csv(INTERIM / "rejected.csv", rejected)
    write_csv(INTERIM / "image_stats.csv", selection.stats_frame())

    table = pd.crosstab(manifest["label"], manifest["source"]).reindex(classes, fill_value=0)
    print(table.to_string())
    print(f"{len(manifest)} images chosen; {len(rejected)} records rejected "
          f"({rejected['code'].value_counts().to_dict()}), see {INTERIM / 'rejected.csv'}")
    for label, (wanted, got) in selection.shortfall.items():
        print(f"note: {label}: {wanted} wanted, only {got} usable images exist; took all of them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
