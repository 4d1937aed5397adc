"""CoroNet: Xception (no top, all trainable) -> Flatten -> Dropout -> Dense relu -> Dense softmax."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from coronet.errors import UserError

XCEPTION_NOTOP = "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
LAST_CONV = "block14_sepconv2_act"  # Xception's last convolutional activation (Grad-CAM's target)
PENULTIMATE = "dense"  # the 256-unit layer before the softmax (the confound probe's features)


class WeightsUnavailableError(UserError):
    """The requested pretrained weights cannot be loaded; the message says what to do."""


def keras_weights_file() -> Path:
    """Where Keras looks for (and caches) the ImageNet Xception weights."""
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return Path(home) / "models" / XCEPTION_NOTOP


def resolve_weights(weights: str | None) -> str | None:
    """``imagenet`` | ``none`` | a path -> what ``keras.applications.Xception`` takes."""
    if weights is None or str(weights).lower() in {"none", "null", ""}:
        return None
    if str(weights).lower() == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(f"train.weights points to {path}, which does not exist")
    return str(path)


def build_model(
    classes: list[str],
    image_size: int,
    weights: str | None = "imagenet",
    dropout: float = 0.5,
    dense_units: int = 256,
    bn_momentum: float | None = None,
) -> Any:
    """The paper's network. Input: float 0..255, (size, size, 3); the Rescaling layer maps it to the
    -1..1 range Xception's ImageNet weights were trained on, so every caller feeds the same thing."""
    import keras
    import tensorflow as tf

    resolved = resolve_weights(weights)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="xception_scale")(inputs)
    try:
        base = keras.applications.Xception(include_top=False, weights=resolved, input_tensor=scaled)
    except Exception as exc:  # Keras raises a bare Exception ("URL fetch failure") offline
        if resolved != "imagenet":
            raise
        raise WeightsUnavailableError(
            f"could not fetch the ImageNet Xception weights ({exc}). Put {XCEPTION_NOTOP} in "
            f"{keras_weights_file().parent} (Keras looks there first; KERAS_HOME moves it), or set "
            "train.weights to the path of a weights file, or train.weights=none to train from scratch."
        ) from exc
    # Built under a strategy of several replicas (several GPUs), BatchNorm takes its batch statistics over
    # the whole global batch, as on one device, not over each replica's share of it.
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            if bn_momentum is not None:
                layer.momentum = float(bn_momentum)
            layer.synchronized = replicas > 1
    x = keras.layers.Flatten(name="flatten")(base.output)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name=PENULTIMATE)(x)
    # float32 output keeps softmax stable under mixed precision.
    outputs = keras.layers.Dense(len(classes), activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="coronet")


def inference_copy(model: Any, classes: list[str]) -> Any:
    """A float32 copy of a trained CoroNet without optimizer state (a third of the size, and all that
    inference needs): whatever precision trained it, evaluation and serving compute in float32, which
    every machine runs at full speed."""
    import keras

    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        copy = build_model(classes, int(model.input_shape[1]), None, float(model.get_layer("dropout").rate),
                           int(model.get_layer(PENULTIMATE).units))
    finally:
        keras.mixed_precision.set_global_policy(policy)
    copy.set_weights(model.get_weights())
    return copy


def load_model(path: str | Path) -> Any:
    """Loads a saved CoroNet in Keras safe mode (no arbitrary code from the file)."""
    import zipfile

    import keras

    if Path(path).is_file() and not zipfile.is_zipfile(path):  # Keras would call it "File not found"
        raise ValueError(f"{path} is not a Keras model file (a .keras file is a zip archive): it is corrupt, "
                         "truncated or of another kind")
    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except ValueError as exc:
        if "safe_mode" not in str(exc):
            raise
        # Keras' own advice (pass safe_mode=False) is not one our commands take, and should not be followed
        # for a file from elsewhere: say what was refused and what to do instead.
        raise ValueError(f"{path} holds code (a Lambda layer or a custom object), which Keras' safe mode refuses to "
                         "run: this project's models hold none. Use a model the train stage wrote (dvc repro, dvc "
                         "pull), or rebuild this one without code layers") from None
