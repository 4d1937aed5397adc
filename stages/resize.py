"""Stage resize: every manifest image as data/processed/images/<id>.png (grayscale, square)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from coronet.files import atomic_dir, write_csv
from coronet.params import load_params
from coronet.resize import resize_all

PROCESSED = Path("data/processed")
INDEX_COLUMNS = ["id", "label", "source", "patient_id", "sha256", "png_sha256", "path"]


def main() -> int:
    cfg = load_params()["resize"]
    manifest = pd.read_csv("data/interim/manifest.csv", dtype=str, keep_default_na=False)
    with atomic_dir(PROCESSED / "images") as tmp:
        written = resize_all(manifest, tmp, int(cfg["size"]), cfg["mode"], int(cfg["workers"]))
    index = manifest.merge(written, on="id", validate="one_to_one")
    index["path"] = [str(PROCESSED / "images" / f"{i}.png") for i in index["id"]]
    write_csv(PROCESSED / "images.csv", index[INDEX_COLUMNS])
    print(f"{len(index)} images written to {PROCESSED / 'images'} at {cfg['size']} px ({cfg['mode']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
