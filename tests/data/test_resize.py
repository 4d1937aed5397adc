"""Data tier: the parallel resize writes the same PNGs as one process, also after one ran in-process."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
from PIL import Image

from coronet.data.resize import resize_all


def test_parallel_equals_single_process(tmp_path):
    archive = tmp_path / "a.zip"
    rows = []
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(12):
            buffer = io.BytesIO()
            mode = ["L", "RGB", "RGBA"][i % 3]
            Image.fromarray(rng.integers(0, 255, (60, 80), dtype=np.uint8)).convert(mode).save(buffer, format="PNG")
            z.writestr(f"x/{i}.jpg", buffer.getvalue())  # PNG bytes under .jpg names, as upstream has
            rows.append({"id": f"i{i}", "archive": str(archive), "original_path": f"x/{i}.jpg"})
    manifest = pd.DataFrame(rows)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    single = resize_all(manifest, tmp_path / "one", 32, "pad", workers=1)  # leaves the archive open here
    parallel = resize_all(manifest, tmp_path / "two", 32, "pad", workers=2)  # forked workers must reopen it
    pd.testing.assert_frame_equal(single, parallel)
    for i in range(12):
        image = Image.open(tmp_path / "two" / f"i{i}.png")
        assert image.size == (32, 32) and image.mode == "L"
