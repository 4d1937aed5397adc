"""Grad-CAM (Selvaraju et al. 2017): where in the image the evidence for a class lies."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from coronet.model import LAST_CONV


def gradcam(model: Any, image: np.ndarray, class_index: int | None = None, layer: str = LAST_CONV
            ) -> tuple[np.ndarray, int]:
    """Heat map in 0..1 at the layer's resolution for one model input (H, W, 3), and the class used
    (the predicted one unless ``class_index`` is given).

    The gradient of the class score with respect to the layer's activations, averaged over space,
    weights each channel; the weighted sum, through ReLU, is the map. The class score is the logit
    before the softmax, as in the paper: once a softmax output saturates (1.0 in float32) its gradient
    is zero and a map of the probability would be blank.
    """
    import tensorflow as tf

    probe, head = _probe(model, layer)
    batch = tf.convert_to_tensor(image[np.newaxis], dtype=tf.float32)
    with tf.GradientTape() as tape:
        activations, features = probe(batch, training=False)
        logits = tf.matmul(tf.cast(features, tf.float32), tf.cast(head.kernel, tf.float32))
        if head.use_bias:
            logits += tf.cast(head.bias, tf.float32)
        index = int(tf.argmax(logits[0])) if class_index is None else int(class_index)
        score = logits[:, index]
    grads = tape.gradient(score, activations)
    weights = tf.reduce_mean(tf.cast(grads, tf.float32), axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(activations, tf.float32), axis=-1))[0].numpy()
    peak = cam.max()
    return (cam / peak if peak > 0 else cam), index


@functools.cache
def _probe(model: Any, layer: str) -> tuple[Any, Any]:
    """The model cut before its last (Dense softmax) layer, with the layer's activations as a second
    output, and that last layer, whose kernel and bias turn the features into class scores. Built once
    per model and layer (``coronet predict --gradcam`` calls Grad-CAM for every image)."""
    import keras

    head = model.layers[-1]
    if not isinstance(head, keras.layers.Dense):
        raise TypeError(f"Grad-CAM needs a Dense output layer, the model ends in {type(head).__name__}")
    return keras.Model(model.inputs, [model.get_layer(layer).output, head.input]), head


def overlay(gray: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """RGB uint8: the grayscale image with the heat map (jet colours) blended over it."""
    from matplotlib import colormaps

    height, width = gray.shape
    resized = np.asarray(Image.fromarray((heatmap * 255).astype(np.uint8)).resize((width, height),
                                                                                  Image.Resampling.BILINEAR))
    colours = colormaps["jet"](resized / 255.0)[..., :3] * 255
    base = np.repeat(gray[..., np.newaxis], 3, axis=-1).astype(np.float64)
    return np.clip((1 - alpha) * base + alpha * colours, 0, 255).astype(np.uint8)


def gradcam_panel(model: object, test: pd.DataFrame, predictions: pd.DataFrame, classes: list[str],
                  image_size: int, per_class: int, path: Path) -> None:
    """A grid of Grad-CAM overlays: per actual class (rows), up to ``per_class`` correct and
    ``per_class`` wrong test images, first by id, so reruns show the same images."""
    import matplotlib.pyplot as plt

    from coronet.images import decode_grayscale, model_input
    from coronet.plots import save_figure

    merged = test[["id", "path"]].merge(predictions, on="id").sort_values("id")
    columns = 2 * per_class
    fig, axes = plt.subplots(len(classes), columns, figsize=(2.2 * columns, 2.4 * len(classes)), squeeze=False)
    for row, name in enumerate(classes):
        actual = merged[merged["label"] == name]
        right = actual[actual["predicted"] == name].head(per_class)
        wrong = actual[actual["predicted"] != name].head(per_class)
        picks = [*right.itertuples(), *wrong.itertuples()]
        for col in range(columns):
            ax = axes[row, col]
            ax.axis("off")
            if col >= len(picks):
                continue
            item = picks[col]
            array = np.asarray(model_input(decode_grayscale(Path(item.path).read_bytes()), image_size))
            heatmap, _ = gradcam(model, array)
            ax.imshow(overlay(array[..., 0].astype(np.uint8), heatmap))
            mark = "right" if item.predicted == name else f"wrong: {item.predicted}"
            ax.set_title(f"{mark} {getattr(item, f'p_{item.predicted}'):.2f}", fontsize=8)
        axes[row, 0].text(-0.1, 0.5, name, transform=axes[row, 0].transAxes, rotation=90, ha="right",
                          va="center", fontsize=9)
    fig.suptitle("Grad-CAM on test images (rows: actual class)")
    save_figure(fig, path)

