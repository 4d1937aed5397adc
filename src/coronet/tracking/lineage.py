"""Where a run's inputs came from: the git commit, the run's name, and the data version, read from the
files and records the train stage declares as dependencies (never from DVC's lock file, which DVC rewrites as the
pipeline runs and no stage can declare)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from coronet.files import sha256_file
from coronet.records import DataRecord


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_name() -> str:
    """A run's name: the DVC experiment's (``dvc exp run -n``), else the commit and time of a plain ``dvc repro``."""
    if name := os.environ.get("DVC_EXP_NAME"):
        return name
    commit = git_commit()
    return f"repro-{commit[:7] if commit != 'unknown' else 'nogit'}-{time.strftime('%Y%m%d-%H%M%S')}"


def data_digests(images_csv: Path, splits_csv: Path) -> dict[str, str]:
    """The data version as two sha256s: the image index (it lists every processed PNG's sha256, so its hash
    names the processed images) and the split assignment."""
    return {"images": sha256_file(images_csv), "splits": sha256_file(splits_csv)}


def data_params(data: DataRecord) -> dict[str, Any]:
    """The data version's settings as MLflow params, from the split stage's record: where the archives came
    from and how the split was drawn (named as in params.yaml, so the UI compares them with DVC's)."""
    return {"download.source": data.download_source, **{f"split.{k}": v for k, v in data.split_settings.items()}}
