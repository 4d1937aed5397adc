"""Stage resize: every manifest image as data/processed/images/<id>.png (grayscale, square)."""

from __future__ import annotations

import pandas as pd

from coronet import paths
from coronet.data.resize import resize_all
from coronet.errors import run_stage
from coronet.files import atomic_dir, write_csv
from coronet.params import ResizeParams, load_params

INDEX_COLUMNS = ["id", "label", "cohort", "source", "patient_id", "finding", "sha256", "pixel_sha256",
                 "near_duplicate_group", "png_sha256", "path"]


def main() -> int:
    cfg = ResizeParams.parse(load_params())
    manifest = pd.read_csv(paths.MANIFEST, dtype=str, keep_default_na=False)
    with atomic_dir(paths.IMAGES) as tmp:
        written = resize_all(manifest, tmp, cfg.size, cfg.mode, cfg.workers)
    index = manifest.merge(written, on="id", validate="one_to_one")
    index["path"] = [str(paths.IMAGES / f"{i}.png") for i in index["id"]]
    write_csv(paths.IMAGES_CSV, index[INDEX_COLUMNS])
    print(f"{len(index)} images written to {paths.IMAGES} at {cfg.size} px ({cfg.mode})")
    return 0


if __name__ == "__main__":
    run_stage(main)
