"""The tf.data input pipeline over the processed PNGs, and the authors' augmentation."""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path
from typing import Any

import pandas as pd

from coronet.images import model_input


def load_images(images_csv: Path, splits_csv: Path) -> pd.DataFrame:
    """Every processed image (id, label, source, patient_id, sha256, path, split), in id order."""
    index = pd.read_csv(images_csv, dtype=str, keep_default_na=False)
    splits = pd.read_csv(splits_csv, dtype=str, keep_default_na=False)
    return index.merge(splits, on="id", validate="one_to_one").sort_values("id", ignore_index=True)


def load_split(name: str, images_csv: Path, splits_csv: Path) -> pd.DataFrame:
    """Rows of one split, in id order."""
    frame = load_images(images_csv, splits_csv)
    return frame[frame["split"] == name].reset_index(drop=True)


def build_augmenter(cfg: dict[str, Any], seed: int) -> Any:
    """Keras preprocessing layers standing in for the authors' ImageDataGenerator settings.

    Fill mode is ``nearest`` as in ImageDataGenerator. ``channel_shift`` is applied by
    :func:`channel_shift` (one intensity offset per image, clipped to the image's own range). The layers
    compute in float32 whatever the training precision: they are input processing, not the model.
    """
    import keras

    layers: list[Any] = []
    f32 = {"dtype": "float32"}
    if cfg.get("rotation_deg"):
        turn = float(cfg["rotation_deg"]) / 360
        layers.append(keras.layers.RandomRotation(turn, fill_mode="nearest", seed=seed, **f32))
    if cfg.get("width_shift") or cfg.get("height_shift"):
        height, width = float(cfg.get("height_shift", 0)), float(cfg.get("width_shift", 0))
        layers.append(keras.layers.RandomTranslation(height, width, fill_mode="nearest", seed=seed + 1, **f32))
    if cfg.get("shear_deg"):
        factor = math.tan(math.radians(float(cfg["shear_deg"])))
        layers.append(keras.layers.RandomShear(x_factor=factor, fill_mode="nearest", seed=seed + 2, **f32))
    if cfg.get("zoom"):
        zoom = float(cfg["zoom"])
        layers.append(keras.layers.RandomZoom((-zoom, zoom), fill_mode="nearest", seed=seed + 3, **f32))
    flips = [name for name in ("horizontal", "vertical") if cfg.get(f"{name}_flip")]
    if flips:
        layers.append(keras.layers.RandomFlip("_and_".join(flips), seed=seed + 4, **f32))
    return keras.Sequential(layers, name="augment")


def channel_shift(images: Any, intensity: float, seed: int) -> Any:
    """ImageDataGenerator's channel shift: add one uniform offset in [-intensity, intensity] per image."""
    import tensorflow as tf

    if not intensity:
        return images
    batch = tf.shape(images)[0]
    offset = tf.random.stateless_uniform([batch, 1, 1, 1], seed=seed, minval=-intensity, maxval=intensity)
    low = tf.reduce_min(images, axis=[1, 2, 3], keepdims=True)
    high = tf.reduce_max(images, axis=[1, 2, 3], keepdims=True)
    return tf.clip_by_value(images + offset, low, high)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffle and augmentation: a function of the run's seed and the epoch alone."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{epoch}".encode()).digest()[:4], "little") & 0x7FFFFFFF


def make_dataset(
    frame: pd.DataFrame,
    classes: list[str],
    image_size: int,
    batch_size: int,
    *,
    augment: dict[str, Any] | None = None,
    shuffle: bool = False,
    seed: int = 0,
    first_epoch: int = 0,
    epochs: int | None = None,
) -> Any:
    """(images, one-hot labels) batches: decoded once, cached, then shuffled/augmented per epoch.

    ``augment`` is given only for the training split; validation and test batches are never changed.
    The result holds the batches of epochs ``first_epoch .. epochs - 1`` one after another (one epoch
    by default). Each epoch's order and augmentation are drawn from :func:`epoch_seed` alone, with
    fresh random layers, so a run resumed at epoch k sees exactly the batches an uninterrupted run
    sees from epoch k on.
    """
    import tensorflow as tf

    labels = [classes.index(label) for label in frame["label"]]
    ds = tf.data.Dataset.from_tensor_slices((list(frame["path"]), labels))

    def load(path: Any, label: Any) -> tuple[Any, Any]:
        gray = tf.io.decode_png(tf.io.read_file(path), channels=1)
        return model_input(gray, image_size), tf.one_hot(label, len(classes))

    decoded = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).cache()
    parts = []
    for epoch in range(first_epoch, first_epoch + 1 if epochs is None else epochs):
        part, part_seed = decoded, epoch_seed(seed, epoch)
        if shuffle:
            part = part.shuffle(max(1, len(frame)), seed=part_seed, reshuffle_each_iteration=False)
        part = part.batch(batch_size)
        if augment:
            part = _augmented(part, augment, part_seed)
        parts.append(part)
    return functools.reduce(lambda a, b: a.concatenate(b), parts).prefetch(tf.data.AUTOTUNE)


def _augmented(batches: Any, augment: dict[str, Any], seed: int) -> Any:
    import tensorflow as tf

    augmenter = build_augmenter(augment, seed)
    intensity = float(augment.get("channel_shift", 0) or 0)

    def apply(step: Any, batch: tuple[Any, Any]) -> tuple[Any, Any]:
        images, y = batch
        images = augmenter(images, training=True)
        return channel_shift(images, intensity, tf.stack([tf.constant(seed, tf.int64), step])), y

    return tf.data.Dataset.zip((tf.data.Dataset.counter(), batches)).map(
        apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
