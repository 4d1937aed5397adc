"""Checkpoint and resume: the newest saved epoch, resumed only by the same inputs.

What a checkpoint belongs to is the hash of everything the train stage declares as a dependency in
dvc.yaml (its script, the library files, the processed images and splits) plus its params and the
TensorFlow/Keras versions: exactly what decides the weights, independent of what happens to be imported.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from coronet.files import atomic_path, write_json


def stage_dependencies(stage: str, dvc_file: Path = Path("dvc.yaml")) -> list[Path]:
    """The deps dvc.yaml lists for ``stage`` (files and folders), as paths."""
    stages = (yaml.safe_load(dvc_file.read_text()) or {}).get("stages", {})
    return [Path(next(iter(d)) if isinstance(d, dict) else d) for d in stages.get(stage, {}).get("deps", [])]


def digest_paths(paths: list[Path]) -> str:
    """sha256 over the names and bytes of ``paths`` (folders: every file below, sorted), in order."""
    digest = hashlib.sha256()
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file).encode() + b"\0")
            digest.update(file.read_bytes() if file.is_file() else b"<missing>")
    return digest.hexdigest()


def fingerprint(params: Any, deps: list[Path]) -> str:
    """What a checkpoint belongs to: ``params`` (the train params, classes, seed), the stage's
    dependencies and the TensorFlow/Keras versions."""
    import keras
    import tensorflow as tf

    key = [params, digest_paths(deps), tf.__version__, keras.__version__]
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def seed_states(model: Any) -> list[list[int]]:
    """The model's random-number states (Dropout's seed generators). Keras does not restore them when it
    loads a saved model, so checkpoints carry them: a resumed run draws the dropout masks it would have."""
    return [[int(x) for x in v.numpy()] for v in model.variables if v.path.endswith("seed_generator_state")]


def restore_seed_states(model: Any, states: list[list[int]]) -> None:
    variables = [v for v in model.variables if v.path.endswith("seed_generator_state")]
    if len(variables) != len(states):
        raise ValueError(f"checkpoint holds {len(states)} random states, the model {len(variables)}")
    for variable, state in zip(variables, states, strict=True):
        variable.assign(state)


class Checkpoints:
    """``directory``: the newest saved epoch's model (with optimizer state) and ``state.json``.

    A finished epoch is saved once ``every_s`` seconds have passed since training started or since the last
    save (0: every epoch). Saving Xception with Adam's moments writes about 300 MB (about 2 s here): on the
    demo's 6-second epochs that was a quarter of training; an interruption now costs at most ``every_s`` of it.
    """

    def __init__(self, directory: Path, key: str, every_s: float = 0) -> None:
        self.directory, self.key, self.every_s = directory, key, every_s
        self.state_file = directory / "state.json"
        self.last_save = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last_save >= self.every_s

    def load_state(self) -> dict[str, Any] | None:
        if not self.state_file.is_file():
            return None
        try:
            state = json.loads(self.state_file.read_text())
        except ValueError:
            state = {}
        if state.get("fingerprint") != self.key or not (self.directory / str(state.get("model"))).is_file():
            print("checkpoint belongs to other params, data or code: starting from epoch 0")
            return None
        return state

    def load_model(self, state: dict[str, Any]) -> Any:
        import keras

        model = keras.models.load_model(self.directory / state["model"], safe_mode=True)
        restore_seed_states(model, state["seed_states"])
        return model

    def save(self, model: Any, epoch: int, history: list[dict[str, float]], run_id: str | None) -> None:
        name = f"epoch-{epoch:04d}.keras"
        with atomic_path(self.directory / name, suffix=".keras") as tmp:
            model.save(tmp)
        write_json(self.state_file, {"fingerprint": self.key, "epoch": epoch, "model": name,
                                     "history": history, "run_id": run_id, "seed_states": seed_states(model)})
        for old in self.directory.glob("epoch-*.keras"):  # the state names the newest; older ones go
            if old.name != name:
                old.unlink()
        self.last_save = time.monotonic()

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
