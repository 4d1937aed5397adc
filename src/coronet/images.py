"""The one image decoder and the one model-input function.

Every image the project touches (merge's decode check, resize, prediction, serving) goes through
:func:`decode_grayscale`; training and prediction both end in :func:`model_input`.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Refuse decompression bombs but allow the largest real radiographs (about 4300 x 4300).
Image.MAX_IMAGE_PIXELS = 60_000_000
DICOM_MAGIC_OFFSET = 128


class ImageDecodeError(ValueError):
    """An input that is not a decodable image, with the reason in the message."""


def is_dicom(data: bytes) -> bool:
    return len(data) >= DICOM_MAGIC_OFFSET + 4 and data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == b"DICM"


def decode_grayscale(data: bytes) -> np.ndarray:
    """Bytes of a PNG, JPEG (any mode) or DICOM file -> 8-bit grayscale array (H, W).

    The format is found from the content, never the file name: the COVID collection has PNGs named
    ``.jpg``. EXIF orientation is applied.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    if is_dicom(data):
        from coronet.dicom import dicom_to_grayscale

        return dicom_to_grayscale(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()  # decode fully now: a truncated file fails here, not later
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Warning) as exc:
        raise ImageDecodeError(f"corrupt or truncated image data: {exc}") from exc
    image = ImageOps.exif_transpose(image)
    return pil_to_grayscale(image)


def pil_to_grayscale(image: Image.Image) -> np.ndarray:
    """Any PIL mode -> uint8 grayscale, scaling high bit depths rather than clipping them."""
    mode = image.mode
    if mode in {"I;16", "I;16B", "I;16L", "I;16N"}:
        return scale_to_uint8(np.asarray(image, dtype=np.uint16), 65535)
    if mode == "I":
        arr = np.asarray(image, dtype=np.int64)
        return scale_to_uint8(arr, 65535 if arr.min() >= 0 and arr.max() <= 65535 else None)
    if mode == "F":
        return scale_to_uint8(np.asarray(image, dtype=np.float64), None)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in {"RGBA", "LA", "PA"}:
        # Transparent pixels carry no signal: composite onto black, as a viewer shows them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode == "CMYK":
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.uint8)


def scale_to_uint8(arr: np.ndarray, full_scale: float | None) -> np.ndarray:
    """Linear map to 0..255: from 0..full_scale, or from the array's own min..max when None."""
    arr = arr.astype(np.float64)
    low, high = (0.0, float(full_scale)) if full_scale else (float(arr.min()), float(arr.max()))
    if high <= low:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.clip(np.rint((arr - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)


def fit_square(gray: np.ndarray, size: int, mode: str = "stretch") -> np.ndarray:
    """Resize a grayscale array to size x size: ``stretch`` (the paper) or ``pad`` (keeps aspect ratio)."""
    image = Image.fromarray(gray)
    if mode == "stretch":
        return np.asarray(image.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)
    if mode == "pad":
        return np.asarray(ImageOps.pad(image, (size, size), Image.Resampling.LANCZOS, color=0), dtype=np.uint8)
    raise ValueError(f"resize mode must be 'stretch' or 'pad', got {mode!r}")


def to_png_bytes(gray: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


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
