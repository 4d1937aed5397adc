"""Fitting CoroNet: params checks, seeds, devices, checkpoint-and-resume, and BatchNorm statistics re-estimation."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from coronet.errors import ParamsError
from coronet.files import atomic_path, write_json
from coronet.params import Section

HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]


def set_seeds(seed: int) -> None:
    """Python, NumPy and TensorFlow from one seed; deterministic ops so a CPU rerun is bit-identical."""
    import keras
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def describe_devices() -> dict[str, str]:
    """What the run trains on, for MLflow: GPU model and count, or CPU."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return {"device": "CPU", "gpu_count": "0"}
    names = sorted({tf.config.experimental.get_device_details(g).get("device_name", "GPU") for g in gpus})
    return {"device": f"{len(gpus)} x {', '.join(names)}", "gpu_count": str(len(gpus))}


def strategy() -> Any:
    """All GPUs through MirroredStrategy when there are several; the default strategy otherwise."""
    import tensorflow as tf

    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def check_params(cfg: Section) -> None:
    """Refuses train params that would fail deep inside Keras, naming the key instead."""
    cfg.integer("image_size", low=71)  # Xception's smallest input
    cfg.integer("batch_size", low=1)
    cfg.integer("epochs", low=1)
    cfg.integer("dense_units", low=1)
    cfg.number("learning_rate", 0, inclusive=False)
    cfg.number("dropout", 0, 1)
    if cfg["bn_momentum"] is not None:
        cfg.number("bn_momentum", 0, 1, inclusive=False)
    for key in ("recalibrate_bn", "mixed_precision", "checkpoint"):
        cfg.flag(key)
    augment = cfg["augment"]
    for key in ("rotation_deg", "shear_deg", "channel_shift"):
        augment.number(key, 0)
    for key in ("width_shift", "height_shift", "zoom"):
        augment.number(key, 0, 1)
    for key in ("horizontal_flip", "vertical_flip"):
        augment.flag(key)
    if not isinstance(cfg["weights"], str | None):
        raise ParamsError(f"params.yaml: train.weights must be imagenet, none or a path, got {cfg['weights']!r}")


def code_digest() -> str:
    """sha256 over the source of every coronet module loaded so far and of the running script: a code fix
    changes it, so a checkpoint made by older code is never resumed."""
    digest = hashlib.sha256()
    modules = {name: m for name, m in sys.modules.items() if name == "__main__" or name.split(".")[0] == "coronet"}
    for name in sorted(modules):
        path = getattr(modules[name], "__file__", None)
        if path and Path(path).is_file():
            digest.update(name.encode() + b"\0" + Path(path).read_bytes())
    return digest.hexdigest()


def fingerprint(*parts: Any) -> str:
    """What a checkpoint belongs to: resuming is only allowed into the same params, data, code and
    TensorFlow/Keras versions."""
    import keras
    import tensorflow as tf

    key = [parts, code_digest(), tf.__version__, keras.__version__]
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
    """One checkpoint per finished epoch (model + optimizer), so a rerun continues where it stopped."""

    def __init__(self, directory: Path, key: str) -> None:
        self.directory, self.key = directory, key
        self.state_file = directory / "state.json"

    def load_state(self) -> dict[str, Any] | None:
        if not self.state_file.is_file():
            return None
        state = json.loads(self.state_file.read_text())
        if state.get("fingerprint") != self.key or not (self.directory / state["model"]).is_file():
            print("checkpoint belongs to other params or data: starting from epoch 0")
            return None
        return state

    def save(self, model: Any, epoch: int, history: list[dict[str, float]], run_id: str | None) -> None:
        name = f"epoch-{epoch:04d}.keras"
        with atomic_path(self.directory / name, suffix=".keras") as tmp:
            model.save(tmp)
        write_json(self.state_file, {"fingerprint": self.key, "epoch": epoch, "model": name,
                                     "history": history, "run_id": run_id, "seed_states": seed_states(model)})
        for old in self.directory.glob("epoch-*.keras"):  # the state names the newest; older ones go
            if old.name != name:
                old.unlink()

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def epoch_callback(on_end: Any) -> Any:
    import keras

    class _EpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            on_end(self.model, epoch + 1, dict(logs or {}))

    return _EpochEnd()


def recalibrate_batchnorm(model: Any, dataset: Any) -> int:
    """Re-estimates every BatchNorm layer's moving mean and variance as exact averages over ``dataset``.

    Why: with few steps (from scratch, short runs) the moving statistics lag far behind the weights
    and inference-mode accuracy sits at chance although the training set is fitted. Setting momentum
    to (k-1)/k on batch k makes the moving values the plain mean of the batch statistics. Runs eagerly
    so the changing momentum takes effect; weights other than the statistics are untouched.
    """
    import keras

    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    original = [layer.momentum for layer in layers]
    batches = 0
    try:
        for batch, _ in dataset:
            batches += 1
            for layer in layers:
                layer.momentum = (batches - 1) / batches
            model(batch, training=True)
    finally:
        for layer, momentum in zip(layers, original, strict=True):
            layer.momentum = momentum
    return batches


