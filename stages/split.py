"""Stage split: data/processed/splits.csv and metrics/data.json (what the dataset holds, per version)."""

from __future__ import annotations

import pandas as pd

from coronet import paths
from coronet.data.split import CONTROL, SCORED_SPLITS, SPLITS, assign_splits, check_leakage, split_summary
from coronet.errors import DataError, run_stage
from coronet.files import write_csv
from coronet.params import SplitParams, load_params
from coronet.records import DataRecord, SourcesRecord


def controls_summary(frame: pd.DataFrame) -> dict[str, object]:
    """The same-source controls: how many are only scored, how many joined the pool, and per finding."""
    same_source = frame[frame["cohort"].isin(["control", "mixed"])]
    return {"scored_only": int((frame["split"] == CONTROL).sum()), "mixed_into_pool": int(
        (frame["cohort"] == "mixed").sum()), "by_finding": {k: int(v) for k, v in
                                                              same_source["finding"].value_counts().sort_index().items()}}


def main() -> int:
    cfg = SplitParams.parse(load_params())
    index = pd.read_csv(paths.IMAGES_CSV, dtype=str, keep_default_na=False)
    rejected = pd.read_csv(paths.REJECTED, dtype=str, keep_default_na=False)
    near = pd.read_csv(paths.NEAR_DUPLICATES, dtype=str, keep_default_na=False)
    pool = index[~index["cohort"].isin(list(SCORED_SPLITS))]
    if absent := [c for c in cfg.classes if c not in set(pool["label"])]:
        raise DataError(f"{paths.IMAGES_CSV} has no image of class {absent}: rerun merge (dvc repro)")
    splits = assign_splits(index, cfg.test_size, cfg.val_size, cfg.group_by, cfg.seed)
    frame = index.merge(splits, on="id", validate="one_to_one")
    leakage = check_leakage(frame, cfg.group_by)  # raises before anything is written
    sources = SourcesRecord.read(paths.SOURCES)
    write_csv(paths.SPLITS, splits)
    DataRecord(
        images=split_summary(frame, cfg.classes),
        total=len(frame),
        sources={k: int(v) for k, v in frame["source"].value_counts().sort_index().items()},
        rejected={"total": len(rejected),
                  **{k: int(v) for k, v in rejected["code"].value_counts().sort_index().items()}},
        near_duplicates={"pairs": len(near), "images": len(set(near["id_a"]) | set(near["id_b"]))},
        leakage=leakage,
        split_settings={"group_by": cfg.group_by, "test_size": cfg.test_size, "val_size": cfg.val_size},
        # Which downloads this data version came from, so `dvc metrics diff` shows an upstream change.
        archives={name: {k: record[k] for k in ("file", "url", "sha256")} for name, record in
                  sources.archives.items()},
        download_source=sources.source,
        controls=controls_summary(frame),
    ).write(paths.DATA_METRICS)
    columns = [*SPLITS, *(s for s in SCORED_SPLITS.values() if (frame["split"] == s).any())]
    table = pd.crosstab(frame["label"].replace("", "(no class)"), frame["split"]).reindex(columns=columns,
                                                                                           fill_value=0)
    print(table.to_string())
    print(f"group_by={cfg.group_by}: patients shared between splits {leakage['patients_shared']}, identical images "
          f"shared {leakage['images_shared']}, near-duplicate groups shared {leakage['near_duplicate_groups_shared']}")
    return 0


if __name__ == "__main__":
    run_stage(main)
