"""Grad-CAM (Selvaraju et al. 2017): where in the image the evidence for a class lies."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from coronet.model import LAST_CONV


def gradcam(model: Any, image: np.ndarray, class_index: int | None = None, layer: str = LAST_CONV
            ) -> tuple[np.ndarray, int]:
    """Heat map in 0..1 at the layer's resolution for one model input (H, W, 3), and the class used
    (the predicted one unless ``class_index`` is given).

    The gradient of the class score with respect to the layer's activations, averaged over space,
    weights each channel; the weighted sum, through ReLU, is the map.
    """
    import keras
    import tensorflow as tf

    probe = keras.Model(model.inputs, [model.get_layer(layer).output, model.output])
    batch = tf.convert_to_tensor(image[np.newaxis], dtype=tf.float32)
    with tf.GradientTape() as tape:
        activations, predictions = probe(batch, training=False)
        index = int(tf.argmax(predictions[0])) if class_index is None else int(class_index)
        score = predictions[:, index]
    grads = tape.gradient(score, activations)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))[0].numpy()
    peak = cam.max()
    return (cam / peak if peak > 0 else cam), index


def overlay(gray: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """RGB uint8: the grayscale image with the heat map (jet colours) blended over it."""
    from matplotlib import colormaps

    height, width = gray.shape
    resized = np.asarray(Image.fromarray((heatmap * 255).astype(np.uint8)).resize((width, height),
                                                                                  Image.Resampling.BILINEAR))
    colours = colormaps["jet"](resized / 255.0)[..., :3] * 255
    base = np.repeat(gray[..., np.newaxis], 3, axis=-1).astype(np.float64)
    return np.clip((1 - alpha) * base + alpha * colours, 0, 255).astype(np.uint8)
