"""Model tier: Grad-CAM peaks where a model whose answer is known looks."""

from __future__ import annotations

import numpy as np


def bright_square_model():
    """Class 1's score rises with the brightest spot of the image, class 0's falls: the evidence for
    class 1 is exactly where the image is bright."""
    import keras

    inputs = keras.Input((32, 32, 3))
    conv = keras.layers.Conv2D(1, 1, activation="relu", name="conv")(inputs)
    pooled = keras.layers.GlobalMaxPooling2D()(conv)
    outputs = keras.layers.Dense(2, activation="softmax")(pooled)
    model = keras.Model(inputs, outputs)
    model.get_layer("conv").set_weights([np.full((1, 1, 3, 1), 1 / 765, "float32"), np.zeros(1, "float32")])
    model.layers[-1].set_weights([np.array([[-4.0, 4.0]], "float32"), np.zeros(2, "float32")])
    return model


def test_heatmap_peaks_on_the_planted_square():
    from coronet.evaluation.gradcam import gradcam, overlay

    model = bright_square_model()
    image = np.full((32, 32, 3), 20.0, dtype="float32")
    image[20:25, 5:10] = 255.0
    heatmap, used = gradcam(model, image, layer="conv")
    assert used == 1  # the bright image is called class 1
    peak = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    assert 20 <= peak[0] < 25 and 5 <= peak[1] < 10
    assert heatmap.max() == 1.0 and heatmap[0, 31] < 0.2
    picture = overlay(image[..., 0].astype(np.uint8), heatmap, caption="Grad-CAM: class 1 0.98")
    assert picture.shape == (448, 448, 3) and picture.dtype == np.uint8  # a 32 px input enlarged to be read
    top, hot = picture[:20], picture[20 * 14 : 25 * 14, 5 * 14 : 10 * 14]
    assert (top.max(axis=2) > 200).any() and (top.max(axis=2) < 30).mean() > 0.5  # the caption on its band
    assert hot[..., 0].mean() > hot[..., 2].mean()  # the square shows red (jet's high end), not blue


def test_heatmap_of_the_other_class_is_empty():
    from coronet.evaluation.gradcam import gradcam

    image = np.full((32, 32, 3), 20.0, dtype="float32")
    image[3:6, 3:6] = 255.0
    heatmap, used = gradcam(bright_square_model(), image, class_index=0, layer="conv")
    assert used == 0 and heatmap.max() == 0  # brightness is evidence against class 0: ReLU leaves nothing


def test_saturated_model_still_shows_where_it_looks():
    """Scaled so the softmax is exactly 1.0 in float32: the probability's gradient vanishes, the class
    score's does not, and the map still peaks on the square."""
    import tensorflow as tf

    from coronet.evaluation.gradcam import gradcam

    model = bright_square_model()
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel * 100, bias])
    image = np.full((32, 32, 3), 20.0, dtype="float32")
    image[20:25, 5:10] = 255.0
    batch = tf.constant(image[np.newaxis])
    with tf.GradientTape() as tape:
        tape.watch(batch)
        probability = model(batch)[:, 1]
    assert float(probability[0]) == 1.0 and float(tf.reduce_max(tf.abs(tape.gradient(probability, batch)))) == 0.0
    heatmap, used = gradcam(model, image, layer="conv")
    peak = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    assert used == 1 and heatmap.max() == 1.0
    assert 20 <= peak[0] < 25 and 5 <= peak[1] < 10 and heatmap[0, 31] < 0.2
