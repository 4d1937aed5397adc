"""Fitting CoroNet: params checks, seeds, devices and precision, checkpoint-and-resume, and BatchNorm
statistics re-estimation."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from coronet.errors import ParamsError
from coronet.files import atomic_path, write_json
from coronet.params import Section

HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
# CPU instructions that run bfloat16 matrix products natively (oneDNN uses them under mixed_bfloat16).
BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}


def set_seeds(seed: int, deterministic: bool = True) -> None:
    """Python, NumPy and TensorFlow from one seed. ``deterministic`` also makes TensorFlow choose
    deterministic kernels (a CPU rerun is then bit-identical); on GPUs some ops have none, and those
    that do can be slower."""
    import keras
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def resolve_precision(requested: str) -> str:
    """``train.precision`` -> a Keras dtype policy. ``auto``: float16 on GPUs of compute capability 7.0
    or newer (tensor cores); bfloat16 on CPUs with AVX512_BF16 or AMX, where benchmarks/precision.py
    measured it faster than float32; float32 otherwise."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if requested == "mixed_float16" and not gpus:
        raise ParamsError("params.yaml: train.precision mixed_float16 needs a GPU; on CPUs use mixed_bfloat16 "
                          "or auto")
    if requested != "auto":
        return requested
    if gpus:
        capability = min(tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)))
                         for gpu in gpus)
        return "mixed_float16" if capability >= (7, 0) else "float32"
    return "mixed_bfloat16" if cpu_flags() & BF16_CPU_FLAGS else "float32"


def set_precision(policy: str) -> None:
    """The dtype policy of every layer built from now on (the softmax head stays float32 in any case)."""
    import keras

    keras.mixed_precision.set_global_policy(policy)


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
    cfg.choice("precision", PRECISIONS)
    for key in ("recalibrate_bn", "deterministic", "checkpoint"):
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


def compiled_model(cfg: Section, classes: list[str], checkpoints: Checkpoints, state: dict[str, Any] | None) -> Any:
    """The paper's model compiled with Adam and cross-entropy, or the checkpoint's (optimizer state, random
    states and all) when resuming; on every GPU when there are several."""
    import keras

    from coronet.model import build_model

    with strategy().scope():
        if state:
            print(f"resuming from the checkpoint of epoch {state['epoch']}")
            model = keras.models.load_model(checkpoints.directory / state["model"], safe_mode=True)
            restore_seed_states(model, state["seed_states"])
            return model
        model = build_model(classes, int(cfg["image_size"]), cfg["weights"], float(cfg["dropout"]),
                            int(cfg["dense_units"]), cfg["bn_momentum"])
        model.compile(optimizer=keras.optimizers.Adam(float(cfg["learning_rate"])), loss="categorical_crossentropy",
                      metrics=["accuracy"])
        return model


def epoch_callback(on_end: Any) -> Any:
    import keras

    class _EpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            on_end(self.model, epoch + 1, dict(logs or {}))

    return _EpochEnd()


def throughput(clock: list[float], images: int) -> dict[str, float] | None:
    """Training speed from the wall times at the start and at each epoch's end: images per second over
    the median epoch after the first (the first also traces the model)."""
    seconds = np.diff(clock)
    if not len(seconds):
        return None
    steady = seconds[1:] if len(seconds) > 1 else seconds
    return {"images_per_s": round(images / float(np.median(steady)), 2), "epochs": len(seconds),
            "first_epoch_s": round(float(seconds[0]), 2), "median_epoch_s": round(float(np.median(steady)), 2)}


def fit(cfg: Section, classes: list[str], seed: int, frames: dict[str, Any], checkpoints: Checkpoints,
        state: dict[str, Any] | None, history_path: Path, run: Any) -> tuple[Any, list[float]]:
    """The paper's training: Adam on the train split with the authors' augmentation, watching the val
    split; resumes from ``state``; after every epoch rewrites ``history_path``, logs the curves to ``run``
    (a :class:`coronet.tracking.PipelineRun`) and saves a checkpoint (naming the run, to resume it); then,
    if asked, re-estimates the BatchNorm statistics.
    Returns the model and the wall time at the start and at each epoch's end."""
    import math

    import pandas as pd

    from coronet.dataset import make_dataset
    from coronet.files import write_csv

    size, batch, epochs = int(cfg["image_size"]), int(cfg["batch_size"]), int(cfg["epochs"])
    first_epoch = state["epoch"] if state else 0
    val_ds = make_dataset(frames["val"], classes, size, batch)
    # Every epoch's order and augmentation depend on (seed, epoch) alone: a resumed run continues both streams.
    train_ds = make_dataset(frames["train"], classes, size, batch, augment=cfg["augment"], shuffle=True, seed=seed,
                            first_epoch=first_epoch, epochs=epochs)
    model = compiled_model(cfg, classes, checkpoints, state)
    history, clock = list(state["history"]) if state else [], [time.perf_counter()]

    def on_epoch_end(model: Any, epoch: int, logs: dict[str, float]) -> None:
        clock.append(time.perf_counter())
        history.append({"epoch": epoch, **{k: float(v) for k, v in logs.items()}})
        # Written every epoch, so `dvc plots show` and the VS Code extension follow a run as it trains.
        write_csv(history_path, pd.DataFrame(history).reindex(columns=HISTORY_COLUMNS))
        run.log_epoch(epoch, logs, clock[-1] - clock[-2])
        if cfg["checkpoint"]:
            checkpoints.save(model, epoch, history, run.run_id)

    if first_epoch < epochs:  # train_ds holds epochs first_epoch..epochs-1 back to back; it shuffles itself
        model.fit(train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=first_epoch, verbose=2,
                  steps_per_epoch=math.ceil(len(frames["train"]) / batch), callbacks=[epoch_callback(on_epoch_end)],
                  shuffle=False)
    if cfg["recalibrate_bn"]:
        before = model.evaluate(val_ds, return_dict=True, verbose=0)
        steps = recalibrate_batchnorm(model, make_dataset(frames["train"], classes, size, batch))
        after = model.evaluate(val_ds, return_dict=True, verbose=0)
        print(f"BatchNorm statistics re-estimated over {steps} training batches: val accuracy "
              f"{before['accuracy']:.3f} -> {after['accuracy']:.3f}")
        run.log_metrics({"bn_recalibration/val_before": before["accuracy"],
                         "bn_recalibration/val_after": after["accuracy"]})
    return model, clock


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


