"""Grad-CAM (Selvaraju et al. 2017): where in the image the evidence for a class lies."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

OVERLAY_MAX_SIDE = 1024  # overlays keep the image's own resolution up to this, so they stay readable
MIN_SHOWN_SIDE = 448  # smaller inputs are enlarged to this for the overlay (a 71 px map is unreadable)


def gradcam(model: Any, image: np.ndarray, layer: str, class_index: int | None = None) -> tuple[np.ndarray, int]:
    """Heat map in 0..1 at the layer's resolution for one model input (H, W, 3), and the class used
    (the predicted one unless ``class_index`` is given). All zeros when nothing in the layer speaks for
    the class.

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


def is_empty(heatmap: np.ndarray) -> bool:
    return float(heatmap.max()) <= 0.0


def overlay(gray: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, caption: str = "") -> np.ndarray:
    """RGB uint8: the grayscale image with the heat map (jet colours) blended over it, at the image's own
    resolution (enlarged to a readable size when small), with ``caption`` (one or more lines) written on a band at
    the top."""
    from matplotlib import colormaps

    base = Image.fromarray(gray)
    longest = max(base.size)
    if longest > OVERLAY_MAX_SIDE or longest < MIN_SHOWN_SIDE:
        scale = (OVERLAY_MAX_SIDE if longest > OVERLAY_MAX_SIDE else MIN_SHOWN_SIDE) / longest
        base = base.resize((max(1, round(base.width * scale)), max(1, round(base.height * scale))),
                           Image.Resampling.LANCZOS)
    width, height = base.size
    resized = np.asarray(Image.fromarray((heatmap * 255).astype(np.uint8)).resize((width, height),
                                                                                  Image.Resampling.BILINEAR))
    colours = colormaps["jet"](resized / 255.0)[..., :3] * 255
    grey = np.repeat(np.asarray(base, dtype=np.float64)[..., np.newaxis], 3, axis=-1)
    picture = Image.fromarray(np.clip((1 - alpha) * grey + alpha * colours, 0, 255).astype(np.uint8))
    if caption:  # one band line per caption line
        draw = ImageDraw.Draw(picture)
        size = max(12, width // 28)
        lines = caption.splitlines()
        draw.rectangle([0, 0, width, int(size * 1.4 * len(lines) + size * 0.3)], fill=(0, 0, 0))
        for k, line in enumerate(lines):
            draw.text((size // 3, size // 4 + int(k * size * 1.4)), line, fill=(255, 255, 255), font_size=size)
    return np.asarray(picture)


def caption(class_name: str, probability: float, empty: bool) -> str:
    return f"Grad-CAM: {class_name} {probability:.2f}" + ("  (empty map: no evidence located)" if empty else "")


def gradcam_panel(classifier: Any, test: pd.DataFrame, predictions: pd.DataFrame, per_class: int, path: Path) -> int:
    """A grid of Grad-CAM overlays: per actual class (rows), up to ``per_class`` correct and ``per_class``
    wrong test images, first by id, so reruns show the same images. Returns how many maps were empty
    (marked in their titles)."""
    import matplotlib.pyplot as plt

    from coronet.evaluation.plots import save_figure
    from coronet.imaging.decode import decode_grayscale

    classes = classifier.classes
    merged = test[["id", "path"]].merge(predictions, on="id").sort_values("id")
    columns = max(1, 2 * per_class)
    fig, axes = plt.subplots(len(classes), columns, figsize=(2.4 * columns, 2.6 * len(classes)), squeeze=False)
    empty = 0
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
            gray = decode_grayscale(Path(item.path).read_bytes())
            heatmap, _ = gradcam(classifier.model, classifier.prepare_gray(gray), classifier.gradcam_layer)
            empty += is_empty(heatmap)
            ax.imshow(overlay(gray, heatmap))
            mark = "right" if item.predicted == name else f"wrong: {item.predicted}"
            flag = " (empty map)" if is_empty(heatmap) else ""
            ax.set_title(f"{mark} {getattr(item, f'p_{item.predicted}'):.2f}{flag}", fontsize=8)
        axes[row, 0].text(-0.1, 0.5, name, transform=axes[row, 0].transAxes, rotation=90, ha="right",
                          va="center", fontsize=9)
    fig.suptitle("Grad-CAM of the predicted class on test images (rows: actual class)")
    save_figure(fig, path)
    return empty
