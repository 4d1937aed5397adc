"""The training loop: the paper's model compiled and fitted on the train split, watching the val split,
resumable epoch by epoch; what happens after each epoch (history file, MLflow curves, checkpoint) is the
caller's, passed in as callbacks."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from coronet.model.batchnorm import recalibrate_batchnorm
from coronet.model.checkpoints import Checkpoints
from coronet.model.dataset import make_dataset
from coronet.model.network import build_model
from coronet.params import TrainParams

# (model, the history so far: one dict per finished epoch with its number and Keras logs, the last epoch's
# wall seconds); called after every finished epoch
EpochCallback = Callable[[Any, list[dict[str, float]], float], None]


@dataclass
class Fitted:
    model: Any
    history: list[dict[str, float]]
    epoch_seconds: list[float] = field(default_factory=list)  # of the epochs this process ran
    recalibration: dict[str, float] = field(default_factory=dict)  # val accuracy before/after, if done

    def throughput(self, images: int) -> dict[str, float] | None:
        """Training speed: images per second over the median epoch after the first (which also traces)."""
        seconds = np.asarray(self.epoch_seconds)
        if not len(seconds):
            return None
        steady = seconds[1:] if len(seconds) > 1 else seconds
        return {"images_per_s": round(images / float(np.median(steady)), 2), "epochs": len(seconds),
                "first_epoch_s": round(float(seconds[0]), 2), "median_epoch_s": round(float(np.median(steady)), 2)}


COSINE_FLOOR = 0.02  # lr_decay cosine ends at this share of the learning rate


def learning_rate(cfg: TrainParams, steps_per_epoch: int) -> Any:
    """``learning_rate``, reached linearly over the first ``warmup_epochs``, then constant (``lr_decay``
    none) or falling along a cosine to COSINE_FLOOR of it by the last epoch (``cosine``). Keras' CosineDecay
    does all of it (with alpha 1 it is flat after its warm-up), and it is saved with the optimizer."""
    import keras

    if not cfg.warmup_epochs and cfg.lr_decay == "none":
        return cfg.learning_rate
    warmup = cfg.warmup_epochs * steps_per_epoch
    decay = max(1, (cfg.epochs - cfg.warmup_epochs) * steps_per_epoch) if cfg.lr_decay == "cosine" else 1
    alpha = COSINE_FLOOR if cfg.lr_decay == "cosine" else 1.0
    if not warmup:
        return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=decay, alpha=alpha)
    return keras.optimizers.schedules.CosineDecay(0.0, decay_steps=decay, alpha=alpha, warmup_target=cfg.learning_rate,
                                                  warmup_steps=warmup)


def compiled_model(cfg: TrainParams, classes: list[str], steps_per_epoch: int) -> Any:
    """The paper's model compiled with Adam and cross-entropy (accuracy as its metric)."""
    import keras

    model = build_model(classes, cfg.image_size, cfg.weights, cfg.dropout, cfg.dense_units, cfg.bn_momentum,
                        cfg.backbone)
    optimizer = keras.optimizers.Adam(learning_rate(cfg, steps_per_epoch), clipnorm=cfg.clipnorm)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def build_training_state(model: Any) -> None:
    """Create the optimizer's, the loss's and the metrics' variables before ``fit`` traces its training step:
    Keras otherwise creates them inside that trace, and a tf.function that creates variables is traced twice
    (on the demo's Xception that second trace is about 7 s of every training run). Metric values this leaves
    behind are reset at the start of every epoch; the weights and the history are those of a plain ``fit``
    (benchmarks/first_epoch.py compares both)."""
    shape = (1, *model.input_shape[1:])
    x = np.zeros(shape, model.input.dtype)
    y = np.zeros((1, model.output_shape[-1]), np.float32)
    y[0, 0] = 1
    y_pred = model(x, training=False)
    model.compute_loss(x, y, y_pred)
    model.compute_metrics(x, y, y_pred, sample_weight=None)
    if not model.optimizer.built:  # a checkpoint's optimizer comes built, with its moments
        model.optimizer.build(model.trainable_variables)


def epoch_callback(on_end: Callable[[Any, int, dict[str, float]], None]) -> Any:
    import keras

    class _EpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            on_end(self.model, epoch + 1, dict(logs or {}))

    return _EpochEnd()


def fit(cfg: TrainParams, classes: list[str], seed: int, frames: dict[str, pd.DataFrame], *,
        checkpoints: Checkpoints, state: dict[str, Any] | None, on_epoch: list[EpochCallback],
        strategy: Any = None) -> Fitted:
    """The paper's training: Adam on the train split with the authors' augmentation (and the nuisance
    augmentation, if params ask), watching the val split; resumes from ``state`` (a checkpoint's); calls
    every ``on_epoch`` after each epoch; then, if asked, re-estimates the BatchNorm statistics.

    Every epoch's order and augmentation depend on (seed, epoch) alone, so a resumed run continues both
    streams exactly. ``strategy`` (default: :func:`coronet.model.runtime.strategy`) places the model.
    """
    import tensorflow as tf

    from coronet.model.runtime import strategy as default_strategy

    strategy = strategy or default_strategy()
    first_epoch = state["epoch"] if state else 0
    steps = math.ceil(len(frames["train"]) / cfg.batch_size)
    val_ds = make_dataset(frames["val"], classes, cfg.image_size, cfg.batch_size)
    train_ds = make_dataset(frames["train"], classes, cfg.image_size, cfg.batch_size, augment=cfg.augment,
                            nuisance=cfg.nuisance, shuffle=True, seed=seed, first_epoch=first_epoch, epochs=cfg.epochs,
                            deterministic=cfg.deterministic)
    with strategy.scope():
        model = checkpoints.load_model(state) if state else compiled_model(cfg, classes, steps)
        if not tf.distribute.has_strategy():  # under a real strategy Keras builds all this symbolically
            build_training_state(model)
    if state:
        print(f"resuming from the checkpoint of epoch {state['epoch']}")
    fitted = Fitted(model, list(state["history"]) if state else [])
    clock = [time.perf_counter()]

    def on_epoch_end(model: Any, epoch: int, logs: dict[str, float]) -> None:
        clock.append(time.perf_counter())
        fitted.epoch_seconds.append(clock[-1] - clock[-2])
        fitted.history.append({"epoch": epoch, **{k: float(v) for k, v in logs.items()}})
        for callback in on_epoch:
            callback(model, fitted.history, fitted.epoch_seconds[-1])

    if first_epoch < cfg.epochs:  # train_ds holds epochs first_epoch..epochs-1 back to back; it shuffles itself
        model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, initial_epoch=first_epoch, verbose=2,
                  steps_per_epoch=steps, callbacks=[epoch_callback(on_epoch_end)], shuffle=False)
    if cfg.recalibrate_bn:
        before = model.evaluate(val_ds, return_dict=True, verbose=0)["accuracy"]
        with strategy.scope():
            batches = recalibrate_batchnorm(model, make_dataset(frames["train"], classes, cfg.image_size,
                                                                cfg.batch_size))
        after = model.evaluate(val_ds, return_dict=True, verbose=0)["accuracy"]
        print(f"BatchNorm statistics re-estimated over {batches} training batches: val accuracy "
              f"{before:.3f} -> {after:.3f}")
        fitted.recalibration = {"val_before": float(before), "val_after": float(after)}
    return fitted
