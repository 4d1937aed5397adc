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
ACCEPTED = ("PNG", "JPEG")  # besides DICOM; anything else is refused with its format named
RESIZE_MODES = ("stretch", "pad")


class ImageDecodeError(ValueError):
    """An input that is not a decodable image, with the reason in the message."""


def max_pixels() -> int:
    """The one pixel limit, for PNG, JPEG and DICOM alike."""
    return int(Image.MAX_IMAGE_PIXELS)


def is_dicom(data: bytes) -> bool:
    return len(data) >= DICOM_MAGIC_OFFSET + 4 and data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == b"DICM"


def decode_grayscale(data: bytes) -> np.ndarray:
    """Bytes of a PNG, JPEG (any mode) or DICOM file -> 8-bit grayscale array (H, W).

    The format is found from the content, never the file name: the COVID collection has PNGs named
    ``.jpg``. EXIF orientation is applied. Other formats (TIFF, GIF, BMP, ...) are refused by name.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    if is_dicom(data):
        from coronet.dicom import dicom_to_grayscale

        return dicom_to_grayscale(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED)
            image.load()  # decode fully now: a truncated file fails here, not later
            image = ImageOps.exif_transpose(image)
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(_unaccepted_format(data)) from exc
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, Image.DecompressionBombError, Warning) as exc:
        raise ImageDecodeError(f"corrupt or truncated image data: {exc}") from exc
    return pil_to_grayscale(image)


def _unaccepted_format(data: bytes) -> str:
    """Why bytes are refused: another image format (named) or no image at all."""
    try:
        with Image.open(io.BytesIO(data)) as other:  # reads the header only
            return f"{other.format} images are not accepted: PNG, JPEG or DICOM only"
    except Exception:  # any failure to identify means: not an image format Pillow knows
        return "not a recognised image format (PNG, JPEG or DICOM expected)"


def pil_to_grayscale(image: Image.Image) -> np.ndarray:
    """Any PIL mode -> uint8 grayscale. Deeper than 8 bits: scaled by the range the pixels really use,
    as DICOM is (a 12-bit X-ray in a 16-bit PNG would otherwise come out nearly black)."""
    mode = image.mode
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I"}:
        return scale_to_uint8(np.asarray(image, dtype=np.int64), None)
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
    if not np.isfinite(arr).all():
        raise ImageDecodeError("image holds non-finite values (NaN or infinity)")
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
    raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")


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
