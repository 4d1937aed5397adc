"""Model tier: Table III, weights handling, one preprocessing path, augmentation only in training,
and BatchNorm statistics re-estimation."""

from __future__ import annotations

import io
import socket
import urllib.request

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import CLASSES, ROOT
from coronet.model.batchnorm import recalibrate_batchnorm
from coronet.model.classifier import Classifier
from coronet.model.dataset import make_dataset
from coronet.model.network import WeightsUnavailableError, build_model
from coronet.params import AugmentParams, load_params

PAPER_AUGMENT = AugmentParams(rotation_deg=50, width_shift=0.2, height_shift=0.2, shear_deg=0.25, zoom=0.1,
                              channel_shift=20, horizontal_flip=True, vertical_flip=True)


def test_parameter_counts_match_table_iii():
    model = build_model(CLASSES, 150, "none")
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert (model.count_params(), trainable, frozen) == (33_969_964, 33_915_436, 54_528)
    assert model.get_layer("dense").count_params() == 13_107_456
    assert model.get_layer("probabilities").count_params() == 1_028


def test_imagenet_weights_unreachable_fail_with_instructions(tmp_path, monkeypatch):
    with socket.socket() as s:  # a closed loopback port as proxy: the fetch fails here, offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{port}")
    # urllib caches one opener (with the proxies of its first use) for the whole process: keep ours private.
    monkeypatch.setattr(urllib.request, "_opener", None)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(WeightsUnavailableError) as info:
        build_model(CLASSES, 71, "imagenet")
    message = str(info.value)
    assert str(tmp_path / "keras" / "models") in message and "train.weights=none" in message


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0"])
def test_a_backbone_is_one_registry_entry_and_one_param(name, tmp_path, monkeypatch):
    """ARCHITECTURE.md, "Adding a backbone": the registered small one, and a new one opened here as a user
    would (one entry in BACKBONES, its name in train.backbone): built, its Grad-CAM layer found, its float32
    inference copy saved and loaded back through its run.json, and every answer explained by Grad-CAM."""
    from coronet.evaluation.gradcam import gradcam
    from coronet.files import sha256_file
    from coronet.model import network
    from coronet.params import Section, TrainParams
    from coronet.records import ModelContract, RunRecord, TrainingData

    if name not in network.BACKBONES:  # the door: one entry
        monkeypatch.setitem(network.BACKBONES, name, network.Backbone(
            "EfficientNetB0", 1.0, 0.0, 32, "top_activation", "efficientnetb0_notop.h5"))
    params = load_params(ROOT / "params.yaml")
    params["train"] = Section({**params["train"], "backbone": name, "image_size": 64}, "train.")
    cfg = TrainParams.parse(params)
    model = build_model(CLASSES, cfg.image_size, None, backbone_name=cfg.backbone)
    path = tmp_path / "coronet.keras"
    network.inference_copy(model, CLASSES, cfg.backbone).save(path)
    RunRecord(None, "coronet", "", [], cfg.as_dict(), 0, "float32", None, ModelContract(
        CLASSES, {}, None, 64, None, 96, "stretch", sha256_file(path), len(CLASSES), cfg.backbone),
        TrainingData("synthetic", {"covid": 1}, 64, None, 1)).sealed().write(tmp_path / "run.json")
    classifier = Classifier.load(path)
    assert classifier.gradcam_layer == network.BACKBONES[name].last_conv
    image = classifier.prepare_gray(np.random.default_rng(0).integers(0, 255, (120, 100), dtype=np.uint8))
    heatmap, used = gradcam(classifier.model, image, classifier.gradcam_layer)
    assert heatmap.ndim == 2 and 0 <= used < len(CLASSES)
    assert "Flatten" in {type(layer).__name__ for layer in classifier.model.layers}


def test_an_unknown_backbone_or_a_size_below_its_minimum_is_a_params_error():
    from coronet.errors import ParamsError

    with pytest.raises(ParamsError, match="registered backbones are xception, mobilenet_v2"):
        build_model(CLASSES, 71, None, backbone_name="resnet")
    with pytest.raises(ParamsError, match="below xception's smallest input"):
        build_model(CLASSES, 64, None)


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        build_model(CLASSES, 71, str(tmp_path / "nope.h5"))


def write_png(path, array):
    Image.fromarray(array).save(path)
    return path


def test_prediction_and_training_share_preprocessing(tmp_path):
    rng = np.random.default_rng(0)
    original = rng.integers(0, 255, (300, 260), dtype=np.uint8)
    # What the resize stage writes for this original, then what training reads from it...
    from coronet.imaging.decode import decode_grayscale, fit_square, to_png_bytes

    buffer = io.BytesIO()
    Image.fromarray(original).save(buffer, format="PNG")
    processed = tmp_path / "x.png"
    processed.write_bytes(to_png_bytes(fit_square(decode_grayscale(buffer.getvalue()), 96, "stretch")))
    frame = pd.DataFrame({"path": [str(processed)], "label": ["covid"]})
    trained_on = next(iter(make_dataset(frame, CLASSES, 71, 1)))[0][0].numpy()
    # ...and what prediction makes of the original file.
    classifier = Classifier(model=None, classes=CLASSES, image_size=71, resize_size=96, resize_mode="stretch")
    predicted_on = classifier.prepare(buffer.getvalue())
    np.testing.assert_array_equal(trained_on, predicted_on)


def test_augmentation_only_when_asked(tmp_path):
    rng = np.random.default_rng(1)
    paths = [str(write_png(tmp_path / f"{i}.png", rng.integers(0, 255, (64, 64), dtype=np.uint8))) for i in range(4)]
    frame = pd.DataFrame({"path": paths, "label": CLASSES})
    plain = make_dataset(frame, CLASSES, 71, 4)
    first, second = (next(iter(plain))[0].numpy() for _ in range(2))
    np.testing.assert_array_equal(first, second)  # evaluation input never changes
    augmented = next(iter(make_dataset(frame, CLASSES, 71, 4, augment=PAPER_AUGMENT, seed=3)))[0].numpy()
    assert augmented.shape == first.shape and not np.allclose(augmented, first)


def test_batchnorm_recalibration_gives_exact_average_statistics():
    import keras
    import tensorflow as tf

    inputs = keras.Input((4,))
    outputs = keras.layers.BatchNormalization(momentum=0.99)(inputs)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(2)
    batches = [rng.normal(loc=5 * i, scale=1 + i, size=(8, 4)).astype("float32") for i in range(3)]
    dataset = tf.data.Dataset.from_tensor_slices((np.concatenate(batches), np.zeros(24))).batch(8)
    assert recalibrate_batchnorm(model, dataset) == 3
    layer = model.layers[-1]
    # float32 sums of 8-24 values (float32 epsilon 1.2e-7 a term, means up to 10): 1e-5 relative; the variance
    # subtracts two such sums of squares, losing a decimal more: 1e-4.
    np.testing.assert_allclose(layer.moving_mean.numpy(), np.mean([b.mean(axis=0) for b in batches], axis=0), rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), np.mean([b.var(axis=0) for b in batches], axis=0),
                               rtol=1e-4)
    assert layer.momentum == 0.99  # restored


def test_same_seed_same_model_on_cpu(tmp_path):
    """Seeds from params make training bit-identical on CPU: two fits, the same weights."""
    import keras

    from coronet.model.fit import build_training_state
    from coronet.model.runtime import set_seeds

    rng = np.random.default_rng(3)
    paths = [str(write_png(tmp_path / f"{i}.png", rng.integers(0, 255, (64, 64), dtype=np.uint8))) for i in range(8)]
    frame = pd.DataFrame({"path": paths, "label": CLASSES * 2})
    augment = AugmentParams(50, 0, 0, 0, 0.1, 20, True, False)

    def fit_once() -> list[np.ndarray]:
        set_seeds(11)
        model = build_model(CLASSES, 71, "none", bn_momentum=0.9)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
        build_training_state(model)  # as training does; also halves the tracing
        model.fit(make_dataset(frame, CLASSES, 71, 4, augment=augment, shuffle=True, seed=11), epochs=1, verbose=0,
                  shuffle=False)
        return [w.numpy() for w in model.weights]

    first, second = fit_once(), fit_once()
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_weights_from_a_file_are_loaded(tmp_path):
    """train.weights may name a local weights file (an air-gapped copy of the ImageNet one, say)."""
    import keras

    keras.utils.set_random_seed(5)
    source = keras.applications.Xception(include_top=False, weights=None, input_shape=(71, 71, 3))
    path = tmp_path / "xception_notop.weights.h5"
    source.save_weights(path)
    model = build_model(CLASSES, 71, str(path))
    conv = model.get_layer("block1_conv1").get_weights()[0]
    np.testing.assert_array_equal(conv, source.get_layer("block1_conv1").get_weights()[0])


def test_a_model_file_holding_code_is_refused_with_advice_our_commands_can_follow(tmp_path):
    """Keras' safe-mode refusal told the user to pass safe_mode=False, which no command of ours takes (and which
    runs the file's code)."""
    import keras

    from coronet.model.network import load_model

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match=r"holds code .* safe mode refuses to run: .*dvc repro") as info:
        load_model(tmp_path / "lambda.keras")
    assert "safe_mode=False" not in str(info.value)
