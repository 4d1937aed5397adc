"""CoroNet: a backbone (Xception in the paper: no top, all trainable) -> Flatten -> Dropout -> Dense relu ->
Dense softmax. The backbones params ``train.backbone`` can name are registered in :data:`BACKBONES`."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coronet.errors import ParamsError, UserError

PENULTIMATE = "dense"  # the layer before the softmax (the confound probe's features)


@dataclass(frozen=True)
class Backbone:
    """What the project needs to know of a Keras application to train, explain and serve it."""

    constructor: str | Callable[[Any], Any]  # its class in keras.applications, or a function: input -> features
    scale: float  # Rescaling(scale, offset) maps the 0..255 input to what its ImageNet weights were trained on
    offset: float
    min_size: int  # its smallest input side
    last_conv: str  # its last convolutional activation: Grad-CAM's target
    weights_file: str | None  # its ImageNet weights without the top as Keras caches them (~/.keras/models); None: none
    options: dict[str, Any] = field(default_factory=dict)  # more constructor arguments


# The door for a new backbone: one entry here, its name in params.yaml train.backbone (ARCHITECTURE.md).
BACKBONES = {
    "xception": Backbone("Xception", 1 / 127.5, -1.0, 71, "block14_sepconv2_act",
                         "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    # 0.4 M weights against Xception's 21 M: for quick experiments and for tests of plumbing, not of learning
    "mobilenet_v2": Backbone("MobileNetV2", 1 / 127.5, -1.0, 32, "out_relu",
                             "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5", {"alpha": 0.35}),
}


def backbone(name: str, image_size: int | None = None) -> Backbone:
    """The registered backbone ``name``, checked against ``image_size``; a ParamsError saying what params take."""
    if name not in BACKBONES:
        raise ParamsError(f"params.yaml: train.backbone is {name!r}; the registered backbones are "
                          f"{', '.join(BACKBONES)} (coronet.model.network.BACKBONES)")
    chosen = BACKBONES[name]
    if image_size is not None and image_size < chosen.min_size:
        raise ParamsError(f"params.yaml: train.image_size {image_size} is below {name}'s smallest input "
                          f"({chosen.min_size} px)")
    return chosen


class WeightsUnavailableError(UserError):
    """The requested pretrained weights cannot be loaded; the message says what to do."""


def keras_weights_file(name: str = "xception") -> Path:
    """Where Keras looks for (and caches) a backbone's ImageNet weights."""
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return Path(home) / "models" / BACKBONES[name].weights_file


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
    backbone_name: str = "xception",
) -> Any:
    """The paper's network on the backbone ``backbone_name``. Input: float 0..255, (size, size, 3); the
    Rescaling layer maps it to the range the backbone's ImageNet weights were trained on, so every caller
    feeds the same thing."""
    import keras
    import tensorflow as tf

    chosen = backbone(backbone_name, image_size)
    resolved = resolve_weights(weights)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    scaled = keras.layers.Rescaling(chosen.scale, offset=chosen.offset, name="input_scale")(inputs)
    if callable(chosen.constructor):
        if resolved:
            raise WeightsUnavailableError(f"the backbone {backbone_name} has no pretrained weights: set train.weights "
                                          "to none")
        features = chosen.constructor(scaled)
    else:
        features = _application(chosen, backbone_name, scaled, resolved)
    x = keras.layers.Flatten(name="flatten")(features)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name=PENULTIMATE)(x)
    # float32 output keeps softmax stable under mixed precision.
    outputs = keras.layers.Dense(len(classes), activation="softmax", dtype="float32", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name="coronet")
    # Built under a strategy of several replicas (several GPUs), BatchNorm takes its batch statistics over
    # the whole global batch, as on one device, not over each replica's share of it.
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            if bn_momentum is not None:
                layer.momentum = float(bn_momentum)
            layer.synchronized = replicas > 1
    return model


def _application(chosen: Backbone, name: str, scaled: Any, weights: str | None) -> Any:
    """A keras.applications backbone's features of ``scaled``; offline ImageNet weights are one clear error."""
    import keras

    try:
        base = getattr(keras.applications, chosen.constructor)(include_top=False, weights=weights,
                                                                input_tensor=scaled, **chosen.options)
    except Exception as exc:  # Keras raises a bare Exception ("URL fetch failure") offline
        if weights != "imagenet":
            raise
        raise WeightsUnavailableError(
            f"could not fetch the ImageNet {chosen.constructor} weights ({exc}). Put {chosen.weights_file} in "
            f"{keras_weights_file(name).parent} (Keras looks there first; KERAS_HOME moves it), or set "
            "train.weights to the path of a weights file, or train.weights=none to train from scratch."
        ) from exc
    return base.output


def inference_copy(model: Any, classes: list[str], backbone_name: str = "xception") -> Any:
    """A float32 copy of a trained CoroNet without optimizer state (a third of the size, and all that
    inference needs): whatever precision trained it, evaluation and serving compute in float32, which
    every machine runs at full speed."""
    import keras

    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        copy = build_model(classes, int(model.input_shape[1]), None, float(model.get_layer("dropout").rate),
                           int(model.get_layer(PENULTIMATE).units), backbone_name=backbone_name)
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
