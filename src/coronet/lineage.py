"""Where a run's inputs came from: the git commit, and the data stages' hashes and params as dvc.lock
recorded them (DVC writes each stage's entry as it finishes, so the train stage sees those before it)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from coronet.params import flatten

DATA_STAGES = ("download", "merge", "resize", "split")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_name() -> str:
    """A run's name: the DVC experiment's (``dvc exp run -n``), else the commit and time of a plain ``dvc repro``."""
    import os
    import time

    if name := os.environ.get("DVC_EXP_NAME"):
        return name
    commit = git_commit()
    return f"repro-{commit[:7] if commit != 'unknown' else 'nogit'}-{time.strftime('%Y%m%d-%H%M%S')}"


def data_lineage(lock_path: Path = Path("dvc.lock")) -> tuple[dict[str, str], dict[str, Any]]:
    """(hashes, params) of the data stages: DVC's hash of each output by path, and the params they ran with."""
    hashes: dict[str, str] = {}
    params: dict[str, Any] = {}
    if lock_path.is_file():
        stages = (yaml.safe_load(lock_path.read_text()) or {}).get("stages", {})
        for name in DATA_STAGES:
            stage = stages.get(name, {})
            for out in stage.get("outs", []):
                hashes[out["path"]] = str(out.get("md5") or out.get("hash") or "")
            for values in stage.get("params", {}).values():
                params.update(flatten({k: v for k, v in values.items() if k.split(".")[0] == name}))
    return hashes, params
