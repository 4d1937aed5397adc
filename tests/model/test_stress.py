"""Model tier: the shortcut stress tests (nuisance transforms, flip rates, known-answer models)."""

from __future__ import annotations

import numpy as np
import pytest

from coronet import stress
from coronet.predict import Classifier

CLASSES = ["covid", "normal", "pneumonia_bacterial", "pneumonia_viral"]
SIZE = 71


def film(seed: int, size: int = 224) -> np.ndarray:
    """A bright textured image (mean about 200), like an exposed film without any frame."""
    rng = np.random.default_rng(seed)
    return rng.integers(170, 231, (size, size), dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(stress.TRANSFORMS))
def test_each_transform_keeps_shape_and_range_and_is_deterministic(name):
    image = film(1)
    strength = 0.2 if name not in {"hflip", "equalize"} else 1.0
    once = stress.apply(name, [image, film(2)], strength, seed=7)
    again = stress.apply(name, [image, film(2)], strength, seed=7)
    for out, repeat in zip(once, again, strict=True):
        assert out.shape == image.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out, repeat)
    assert not np.array_equal(once[0], image)  # a real change at this strength
    np.testing.assert_array_equal(stress.apply(name, [image], 0.0, seed=7)[0], image)  # strength 0: the original


def test_frames_cover_exactly_the_border():
    image = film(3, 100)
    median = stress.TRANSFORMS["frame_median"](image, 0.2, np.random.default_rng(0))
    black = stress.TRANSFORMS["frame_black"](image, 0.2, np.random.default_rng(0))
    assert (black[:20] == 0).all() and (black[:, 80:] == 0).all()
    np.testing.assert_array_equal(black[20:80, 20:80], image[20:80, 20:80])
    assert (median[:20] == int(np.median(image))).all()


def linear_classifier(weights_for_covid: np.ndarray) -> Classifier:
    """A model whose COVID-19 logit is 0.05 x (128 - weighted mean of the input pixels), normal's is 0 and
    the pneumonias' -10: bright pixels under the weights mean "normal", dark ones "COVID-19"."""
    import keras

    mask = np.repeat(weights_for_covid[..., None], 3, axis=-1).astype(np.float32)
    mask /= mask.sum()
    inputs = keras.Input((SIZE, SIZE, 3))
    outputs = keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((SIZE * SIZE * 3, 4), np.float32)
    kernel[:, 0] = -0.05 * mask.ravel()
    model.layers[-1].set_weights([kernel, np.array([0.05 * 128, 0, -10, -10], np.float32)])
    return Classifier(model, CLASSES, SIZE, 224, "stretch")


def ring(width: float) -> np.ndarray:
    grid = np.zeros((SIZE, SIZE))
    k = round(SIZE * width)
    grid[:k], grid[-k:], grid[:, :k], grid[:, -k:] = 1, 1, 1, 1
    return grid


def test_a_model_keyed_on_the_frame_flips_and_one_that_ignores_it_does_not():
    images = [film(k) for k in range(12)]
    labels = ["normal"] * 12
    keyed = linear_classifier(ring(0.1))  # reads only the outer tenth: where a frame goes
    centre = 1 - ring(0.3)  # reads only the centre, which a 20% frame never touches
    ignoring = linear_classifier(centre)
    transforms = {"frame_black": [0.2], "hflip": [1.0]}

    shortcut = stress.run(keyed, images, labels, transforms, seed=0, batch_size=5)
    assert shortcut["baseline"]["accuracy"] == 1.0  # every bright film is "normal" before
    frame = shortcut["transforms"]["frame_black"]["0.2"]
    assert frame["flip_rate"] == 1.0 and frame["flip_to"]["covid"] == 1.0 and frame["called"]["covid"] == 1.0
    assert frame["accuracy"] == 0.0 and frame["mean_probability_change"]["covid"] > 0.5
    assert shortcut["transforms"]["hflip"]["1"]["flip_rate"] == 0.0  # the ring is symmetric
    assert stress.warnings(shortcut, 0.2) and "frame_black at strength 0.2 changes 100%" in stress.warnings(
        shortcut, 0.2)[0]

    robust = stress.run(ignoring, images, labels, transforms, seed=0, batch_size=5)
    assert robust["transforms"]["frame_black"]["0.2"]["flip_rate"] == 0.0
    assert abs(robust["transforms"]["frame_black"]["0.2"]["mean_probability_change"]["covid"]) < 1e-3
    assert stress.warnings(robust, 0.2) == []


def test_unknown_transforms_and_bad_strengths_are_params_errors():
    from coronet.errors import ParamsError
    from coronet.params import Section

    with pytest.raises(ParamsError, match="unknown transform"):
        stress.check_params(Section({"warn_flip_rate": 0.2, "transforms": {"blur": [0.1]}}, "evaluate.stress."))
    with pytest.raises(ParamsError, match=r"evaluate\.stress\.transforms\.jpeg must be a list"):
        stress.check_params(Section({"warn_flip_rate": 0.2, "transforms": {"jpeg": 5}}, "evaluate.stress."))
