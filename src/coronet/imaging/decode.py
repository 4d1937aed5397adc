"""The one image decoder (PNG, JPEG and DICOM), and the resize stage's square 8-bit grayscale form.

Every image the project touches (merge's decode check, resize, prediction, serving, the page) goes
through :func:`decode_grayscale`; the model input is made from its result (:mod:`coronet.model.dataset`).
DICOM pixel data is shown as a radiologist's viewer would show it, within the decoder's limits
(:func:`dicom_to_grayscale`).
"""

from __future__ import annotations

import io
import math
import re
import warnings
import zlib

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Refuse decompression bombs but allow the largest real radiographs (about 4300 x 4300).
Image.MAX_IMAGE_PIXELS = 60_000_000
DICOM_MAGIC_OFFSET = 128
ACCEPTED = ("PNG", "JPEG")  # besides DICOM; anything else is refused with its format named


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
        return dicom_to_grayscale(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED)
            image.load()  # decode fully now: a truncated file fails here, not later
            image = ImageOps.exif_transpose(image)
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(_unaccepted_format(data)) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(_over_limit(str(exc))) from None
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, Warning) as exc:
        raise ImageDecodeError(f"corrupt or truncated image data: {exc}") from exc
    return pil_to_grayscale(image)


def _over_limit(message: str) -> str:
    """Our pixel limit in words, whichever of Pillow's two refusals (over the limit, or over twice it) fired."""
    found = re.search(r"\((\d+) pixels\)", message)
    size = f"{int(found[1]):,} pixels" if found else "more pixels than allowed"
    return (f"image of {size} is over the {max_pixels():,}-pixel limit (larger than any chest X-ray: a "
            "decompression bomb or a stitched scan); downscale it first")


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
        return scale_to_uint8(np.asarray(image), None)  # its own integer type: a 16-bit image stays 2 bytes a pixel
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


LUT_MAX_LEVELS = 1 << 17  # integer images with at most this many levels are mapped through a lookup table
CHUNK_PIXELS = 1 << 20  # float images are scaled this many pixels at a time


def scale_to_uint8(arr: np.ndarray, full_scale: float | None) -> np.ndarray:
    """Linear map to 0..255: from 0..full_scale, or from the array's own min..max when None.

    Within a memory budget: a 7700 x 7700 16-bit PNG as float64 would take 470 MB per copy, and the
    arithmetic makes several. Integer images go through a lookup table of their levels (the same values as
    the float formula, one uint8 output array); float images are scaled a chunk of pixels at a time.
    """
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ImageDecodeError("image holds non-finite values (NaN or infinity)")
    low, high = (0.0, float(full_scale)) if full_scale else (float(arr.min()), float(arr.max()))
    if high <= low:
        return np.zeros(arr.shape, dtype=np.uint8)
    factor = 255.0 / (high - low)
    if arr.dtype.kind in "ui" and float(arr.min()) >= low and float(arr.max()) - low < LUT_MAX_LEVELS:
        start = int(arr.min())
        levels = np.arange(start, int(arr.max()) + 1, dtype=np.float64)
        lut = np.clip(np.rint((levels - low) * factor), 0, 255).astype(np.uint8)
        return lut[arr - arr.dtype.type(start)]
    flat = arr.reshape(-1)
    out = np.empty(flat.shape, dtype=np.uint8)
    for i in range(0, flat.size, CHUNK_PIXELS):
        part = flat[i : i + CHUNK_PIXELS].astype(np.float64)
        out[i : i + CHUNK_PIXELS] = np.clip(np.rint((part - low) * factor), 0, 255)
    return out.reshape(arr.shape)


def fit_square(gray: np.ndarray, size: int, mode: str = "stretch") -> np.ndarray:
    """Resize a grayscale array to size x size: ``stretch`` (the paper) or ``pad`` (keeps aspect ratio)."""
    image = Image.fromarray(gray)
    if mode == "stretch":
        return np.asarray(image.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)
    if mode == "pad":
        return np.asarray(ImageOps.pad(image, (size, size), Image.Resampling.LANCZOS, color=0), dtype=np.uint8)
    raise ValueError(f"resize mode must be stretch or pad, got {mode!r}")


def to_png_bytes(gray: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


# DICOM

DEFLATED = "1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian: the whole dataset is zlib-compressed
METADATA_ALLOWANCE = 16 << 20  # bytes a deflated dataset may hold beyond its pixels


def dicom_to_grayscale(data: bytes) -> np.ndarray:
    """Applies rescale slope/intercept, the VOI LUT or window, and inverts MONOCHROME1.

    Odd tags are errors with a reason, never a black or garbage image: a RescaleSlope of 0 or NaN, a
    WindowWidth below 1, a non-numeric NumberOfFrames. The pixel limit is checked before any pixel is
    decoded (and before a deflated dataset is inflated past it); multi-frame files give their first frame.
    """
    ds = _read(data)
    if "PixelData" not in ds:
        raise ImageDecodeError("DICOM file has no pixel data")
    rows, columns, samples = (_integer(ds, tag, 1) for tag in ("Rows", "Columns", "SamplesPerPixel"))
    frames = _integer(ds, "NumberOfFrames", 1)
    if rows * columns * samples > max_pixels():
        raise ImageDecodeError(f"DICOM image of {columns} x {rows} pixels is over the {max_pixels():,}-pixel limit")
    slope = _number(ds, "RescaleSlope", 1.0)
    if slope == 0:
        raise ImageDecodeError("DICOM RescaleSlope is 0: every pixel would have the same value")
    width = _number(ds, "WindowWidth", 1.0)
    if width < 1:
        raise ImageDecodeError(f"DICOM WindowWidth {width:g} is invalid (must be at least 1)")
    syntax = ds.file_meta.get("TransferSyntaxUID", "unknown") if hasattr(ds, "file_meta") else "unknown"
    try:
        if frames > 1:
            ds.pixel_array_options(index=0)  # decode the first frame only
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for missing codecs and bad data
        name = getattr(syntax, "name", str(syntax))
        raise ImageDecodeError(f"cannot decode DICOM pixel data (transfer syntax {name}): {exc}") from exc
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if pixels.ndim == 3:  # colour DICOM: plain luminance
        return scale_to_uint8(pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114]), 255)
    values = apply_modality_lut(pixels, ds)
    values = apply_voi_lut(values, ds) if ("WindowCenter" in ds or "VOILUTSequence" in ds) else values
    gray = scale_to_uint8(np.asarray(values, dtype=np.float64), None)
    if photometric == "MONOCHROME1":  # low values are white in MONOCHROME1
        gray = 255 - gray
    return gray


def _read(data: bytes) -> object:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        fp = io.BytesIO(data)
        pydicom.filereader.read_preamble(fp, False)
        # pydicom's public read_file_meta_info wants a path; this is the same call on bytes.
        meta = pydicom.filereader._read_file_meta_info(fp)
        if str(meta.get("TransferSyntaxUID", "")) == DEFLATED:
            return _inflated(fp, meta)
        return pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError, zlib.error) as exc:
        raise ImageDecodeError(f"unreadable DICOM file: {exc}") from exc


def _inflated(fp: io.BytesIO, meta: object) -> object:
    """A deflated dataset, inflated only up to the largest size an image within the limit can have."""
    from pydicom.filereader import read_dataset
    from pydicom.uid import ExplicitVRLittleEndian

    cap = 2 * max_pixels() + METADATA_ALLOWANCE
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    body = inflater.decompress(fp.read(), cap)
    if inflater.unconsumed_tail:
        raise ImageDecodeError(f"deflated DICOM inflates to more than {cap:,} bytes: over the pixel limit")
    ds = read_dataset(io.BytesIO(body), is_implicit_VR=False, is_little_endian=True)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian  # what the bytes are now
    ds.file_meta = meta
    return ds


def _value(ds: object, tag: str, default: object) -> object:
    """A tag's value; pydicom converts on access and raises for malformed strings (an IS of 'many')."""
    try:
        value = ds.get(tag, default)
    except (ValueError, TypeError, OverflowError):
        raise ImageDecodeError(f"DICOM {tag} holds a malformed value") from None
    return default if value in (None, "") else value


def _integer(ds: object, tag: str, default: int) -> int:
    value = _value(ds, tag, default)
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ImageDecodeError(f"DICOM {tag} {value!r} is not a whole number") from None
    if number < 1:
        raise ImageDecodeError(f"DICOM {tag} {number} must be at least 1")
    return number


def _number(ds: object, tag: str, default: float) -> float:
    value = _value(ds, tag, default)
    first = value[0] if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue" else value
    try:
        number = float(first)
    except (TypeError, ValueError):
        raise ImageDecodeError(f"DICOM {tag} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ImageDecodeError(f"DICOM {tag} is {number}: not a finite number")
    return number
