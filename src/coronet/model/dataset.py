"""The model's input: the one model-input function, and the tf.data pipeline over the processed PNGs with
the authors' augmentation and (params ``train.nuisance``) the nuisance augmentation, training batches only."""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coronet.errors import DataError
from coronet.imaging.nuisance import augment as nuisance_augment
from coronet.params import AugmentParams, NuisanceParams


def model_input(gray: Any, image_size: int) -> Any:
    """uint8 grayscale (H, W) or (H, W, 1), or a batch of them -> float32 (size, size, 3) in 0..255.

    Used by the tf.data training pipeline and by prediction alike. Scaling to the range the
    weights expect happens inside the model (its Rescaling layer), so a saved model is complete.
    """
    import tensorflow as tf

    x = tf.convert_to_tensor(gray)
    if x.shape.rank == 2 or (x.shape.rank == 3 and x.shape[-1] != 1):
        x = x[..., tf.newaxis]
    x = tf.image.resize(tf.cast(x, tf.float32), (image_size, image_size), antialias=True)
    x = tf.clip_by_value(x, 0.0, 255.0)
    return tf.image.grayscale_to_rgb(x)


def read_index(images_csv: Path, splits_csv: Path) -> pd.DataFrame:
    """Every processed image (images.csv: id, label, source, patient_id, hashes, path) with its split, by id."""
    index = pd.read_csv(images_csv, dtype=str, keep_default_na=False)
    splits = pd.read_csv(splits_csv, dtype=str, keep_default_na=False)
    if missing := [path for path in index["path"] if not Path(path).is_file()]:
        raise DataError(f"{len(missing)} processed image(s) that {images_csv} lists are missing (first: {missing[0]}): "
                        f"restore them with `dvc checkout {Path(missing[0]).parent}`, or rerun the resize stage "
                        "(dvc repro -f resize)")
    return index.merge(splits, on="id", validate="one_to_one").sort_values("id", ignore_index=True)


def load_split(name: str, images_csv: Path, splits_csv: Path) -> pd.DataFrame:
    """Rows of one split, in id order."""
    frame = read_index(images_csv, splits_csv)
    return frame[frame["split"] == name].reset_index(drop=True)


def balance_sources(frame: pd.DataFrame) -> pd.DataFrame:
    """The training rows with each class drawing equally from every source that has it: within a class, a
    smaller source's rows are repeated (in id order, whole rounds first) up to the largest source's count.
    Without it a class's rare source (the adults' normal films among thousands of children's) barely
    counts, and "adult" stays a shortcut to COVID-19."""
    parts = []
    for _, by_class in frame.groupby("label", sort=True):
        largest = by_class["source"].value_counts().max()
        for _, cell in by_class.groupby("source", sort=True):
            cell = cell.sort_values("id")
            parts.append(cell.iloc[np.arange(largest) % len(cell)])
    return pd.concat(parts, ignore_index=True).sort_values(["id"], kind="stable", ignore_index=True)


def build_augmenter(cfg: AugmentParams, seed: int) -> Any:
    """Keras preprocessing layers standing in for the authors' ImageDataGenerator settings.

    Fill mode is ``nearest`` as in ImageDataGenerator. ``channel_shift`` is applied by
    :func:`channel_shift` (one intensity offset per image, clipped to the image's own range). The layers
    compute in float32 whatever the training precision: they are input processing, not the model.
    """
    import keras

    layers: list[Any] = []
    f32 = {"dtype": "float32"}
    if cfg.rotation_deg:
        layers.append(keras.layers.RandomRotation(cfg.rotation_deg / 360, fill_mode="nearest", seed=seed, **f32))
    if cfg.width_shift or cfg.height_shift:
        layers.append(keras.layers.RandomTranslation(cfg.height_shift, cfg.width_shift, fill_mode="nearest",
                                                     seed=seed + 1, **f32))
    if cfg.shear_deg:
        factor = math.tan(math.radians(cfg.shear_deg))
        layers.append(keras.layers.RandomShear(x_factor=factor, fill_mode="nearest", seed=seed + 2, **f32))
    if cfg.zoom:
        layers.append(keras.layers.RandomZoom((-cfg.zoom, cfg.zoom), fill_mode="nearest", seed=seed + 3, **f32))
    flips = [name for name in ("horizontal", "vertical") if getattr(cfg, f"{name}_flip")]
    if flips:
        layers.append(keras.layers.RandomFlip("_and_".join(flips), seed=seed + 4, **f32))
    return keras.Sequential(layers, name="augment")


def channel_shift(images: Any, intensity: float, seed: Any) -> Any:
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
    augment: AugmentParams | None = None,
    nuisance: NuisanceParams | None = None,
    shuffle: bool = False,
    seed: int = 0,
    first_epoch: int = 0,
    epochs: int | None = None,
    labelled: bool = True,
    deterministic: bool = True,
) -> Any:
    """(images, one-hot labels) batches: decoded once, cached, then shuffled/augmented per epoch.

    ``augment`` and ``nuisance`` are given only for the training split; validation and test batches are
    never changed. Nuisance transforms work on the processed image (as the stress tests do), before the
    model input is made from it; the authors' augmentation works on the model input. The result holds the
    batches of epochs ``first_epoch .. epochs - 1`` one after another (one epoch by default). Each epoch's
    order and augmentation are drawn from :func:`epoch_seed` alone, with fresh random layers, so a run
    resumed at epoch k sees exactly the batches an uninterrupted run sees from epoch k on. With
    ``labelled`` false (images some of which have no class, for prediction) every label is the first class.
    ``deterministic``: whether TensorFlow's op determinism is on (params train.deterministic).
    """
    import tensorflow as tf

    labels = [classes.index(label) for label in frame["label"]] if labelled else [0] * len(frame)
    steps = {name: (s.p, s.low, s.high) for name, s in nuisance.active.items()} if nuisance else {}
    ds = tf.data.Dataset.from_tensor_slices((list(frame["path"]), labels))

    def load(path: Any, label: Any) -> tuple[Any, Any]:
        gray = tf.io.decode_png(tf.io.read_file(path), channels=1)
        return (gray if steps else model_input(gray, image_size)), tf.one_hot(label, len(classes))

    # With op determinism on (train.deterministic) and random layers in the pipeline, tf.data runs every map
    # whose function is stateful (ReadFile here, the layers' seed variables below) one element at a time
    # whatever it is asked: it rewrites each parallel map into a plain one, and TF logs a C++ NodeDef line
    # about the attribute the rewrite drops. Asking for plain maps then avoids the line and changes nothing.
    augment = augment if augment and augment.active else None
    parallel = None if deterministic and augment else tf.data.AUTOTUNE
    decoded = ds.map(load, num_parallel_calls=parallel).cache()
    parts = []
    for epoch in range(first_epoch, first_epoch + 1 if epochs is None else epochs):
        part, part_seed = decoded, epoch_seed(seed, epoch)
        if shuffle:
            part = part.shuffle(max(1, len(frame)), seed=part_seed, reshuffle_each_iteration=False)
        if steps:
            part = _with_nuisance(part, steps, part_seed, image_size)
        part = part.batch(batch_size)
        if augment:
            part = _augmented(part, augment, part_seed, parallel)
        parts.append(part)
    return functools.reduce(lambda a, b: a.concatenate(b), parts).prefetch(tf.data.AUTOTUNE)


def _with_nuisance(images: Any, steps: dict[str, tuple[float, float, float]], seed: int, image_size: int) -> Any:
    """Image k of the epoch through :func:`coronet.imaging.nuisance.augment`, drawing from (seed, k) alone."""
    import tensorflow as tf

    def transform(gray: np.ndarray, k: np.int64) -> np.ndarray:
        return nuisance_augment(gray[..., 0], steps, [seed, int(k)])[..., np.newaxis]

    def apply(k: Any, item: tuple[Any, Any]) -> tuple[Any, Any]:
        gray, y = item
        changed = tf.numpy_function(transform, [gray, k], tf.uint8, stateful=False)
        changed.set_shape(gray.shape)
        return model_input(changed, image_size), y

    return tf.data.Dataset.zip((tf.data.Dataset.counter(), images)).map(
        apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _augmented(batches: Any, augment: AugmentParams, seed: int, parallel: int | None) -> Any:
    import tensorflow as tf

    augmenter = build_augmenter(augment, seed)

    def apply(step: Any, batch: tuple[Any, Any]) -> tuple[Any, Any]:
        images, y = batch
        images = augmenter(images, training=True)
        return channel_shift(images, augment.channel_shift, tf.stack([tf.constant(seed, tf.int64), step])), y

    return tf.data.Dataset.zip((tf.data.Dataset.counter(), batches)).map(apply, num_parallel_calls=parallel)
