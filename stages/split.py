"""Stage split: data/processed/splits.csv and metrics/data.json (what the dataset holds, per version)."""

from __future__ import annotations

import json

import pandas as pd

from coronet import paths
from coronet.errors import DataError, run_stage
from coronet.files import write_csv, write_json
from coronet.params import class_names, load_params
from coronet.split import GROUP_BY, assign_splits, check_leakage, split_summary


def main() -> int:
    params = load_params()
    cfg, classes, seed = params["split"], class_names(params), params.integer("seed")
    group_by = cfg.choice("group_by", GROUP_BY)
    test_size = cfg.number("test_size", 0, 1, inclusive=False)
    val_size = cfg.number("val_size", 0, 1, inclusive=False)
    index = pd.read_csv(paths.IMAGES_CSV, dtype=str, keep_default_na=False)
    rejected = pd.read_csv(paths.REJECTED, dtype=str, keep_default_na=False)
    near = pd.read_csv(paths.NEAR_DUPLICATES, dtype=str, keep_default_na=False)
    if absent := [c for c in classes if c not in set(index["label"])]:
        raise DataError(f"data/processed/images.csv has no image of class {absent}: rerun merge (dvc repro)")
    splits = assign_splits(index, test_size, val_size, group_by, seed)
    frame = index.merge(splits, on="id", validate="one_to_one")
    leakage = check_leakage(frame, group_by)  # raises before anything is written
    sources = json.loads(paths.SOURCES.read_text())
    write_csv(paths.SPLITS, splits)
    data = {
        "images": split_summary(frame, classes),
        "total": len(frame),
        "sources": {k: int(v) for k, v in frame["source"].value_counts().sort_index().items()},
        "rejected": {"total": len(rejected),
                     **{k: int(v) for k, v in rejected["code"].value_counts().sort_index().items()}},
        "near_duplicates": {"pairs": len(near), "images": len(set(near["id_a"]) | set(near["id_b"]))},
        "leakage": leakage,
        # for the model card; not "split", which would clash with the params section in `dvc exp show`
        "split_settings": {"group_by": group_by, "test_size": test_size, "val_size": val_size},
        # Which downloads this data version came from, so `dvc metrics diff` shows an upstream change.
        "archives": {name: {k: record[k] for k in ("file", "url", "sha256")} for name, record in
                     sources["archives"].items()},
        "download_source": sources["source"],
    }
    write_json(paths.DATA_METRICS, data)
    table = pd.crosstab(frame["label"], frame["split"]).reindex(index=classes, columns=["train", "val", "test"],
                                                                 fill_value=0)
    print(table.to_string())
    print(f"group_by={group_by}: patients shared between splits {leakage['patients_shared']}, identical images "
          f"shared {leakage['images_shared']}, near-duplicate groups shared {leakage['near_duplicate_groups_shared']}")
    return 0


if __name__ == "__main__":
    run_stage(main)
