"""Stage split: data/processed/splits.csv and metrics/data.json (what the dataset holds, per version)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from coronet.files import write_csv, write_json
from coronet.params import class_names, load_params
from coronet.split import assign_splits, check_leakage, split_summary


def main() -> int:
    params = load_params()
    cfg, classes, seed = params["split"], class_names(params), int(params["seed"])
    index = pd.read_csv("data/processed/images.csv", dtype=str, keep_default_na=False)
    rejected = pd.read_csv("data/interim/rejected.csv", dtype=str, keep_default_na=False)
    splits = assign_splits(index, float(cfg["test_size"]), float(cfg["val_size"]), cfg["group_by"], seed)
    frame = index.merge(splits, on="id", validate="one_to_one")
    leakage = check_leakage(frame, cfg["group_by"])  # raises before anything is written
    write_csv(Path("data/processed/splits.csv"), splits)
    data = {
        "images": split_summary(frame, classes),
        "total": len(frame),
        "sources": {k: int(v) for k, v in frame["source"].value_counts().sort_index().items()},
        "rejected": {"total": len(rejected),
                     **{k: int(v) for k, v in rejected["code"].value_counts().sort_index().items()}},
        "leakage": leakage,
    }
    write_json(Path("metrics/data.json"), data)
    table = pd.crosstab(frame["label"], frame["split"]).reindex(index=classes, columns=["train", "val", "test"],
                                                                 fill_value=0)
    print(table.to_string())
    print(f"group_by={cfg['group_by']}: patients shared between splits {leakage['patients_shared']}, "
          f"identical images shared {leakage['images_shared']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
