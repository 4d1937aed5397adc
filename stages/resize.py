"""Stage resize: every manifest image as data/processed/images/<id>.png (grayscale, square)."""

from __future__ import annotations

import pandas as pd

from coronet import paths
from coronet.errors import run_stage
from coronet.files import atomic_dir, write_csv
from coronet.images import RESIZE_MODES
from coronet.params import load_params
from coronet.resize import resize_all

INDEX_COLUMNS = ["id", "label", "source", "patient_id", "sha256", "pixel_sha256", "near_duplicate_group",
                 "png_sha256", "path"]


def main() -> int:
    cfg = load_params()["resize"]
    size, mode, workers = cfg.integer("size", low=8), cfg.choice("mode", RESIZE_MODES), cfg.integer("workers", low=0)
    manifest = pd.read_csv(paths.MANIFEST, dtype=str, keep_default_na=False)
    with atomic_dir(paths.IMAGES) as tmp:
        written = resize_all(manifest, tmp, size, mode, workers)
    index = manifest.merge(written, on="id", validate="one_to_one")
    index["path"] = [str(paths.IMAGES / f"{i}.png") for i in index["id"]]
    write_csv(paths.IMAGES_CSV, index[INDEX_COLUMNS])
    print(f"{len(index)} images written to {paths.IMAGES} at {size} px ({mode})")
    return 0


if __name__ == "__main__":
    run_stage(main)
