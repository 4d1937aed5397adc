"""DICOM pixel data -> 8-bit grayscale, as a radiologist's viewer would show it, within the decoder's limits."""

from __future__ import annotations

import io
import math
import zlib

import numpy as np

from coronet.images import ImageDecodeError, max_pixels, scale_to_uint8

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
