"""DICOM pixel data -> 8-bit grayscale, as a radiologist's viewer would show it."""

from __future__ import annotations

import io

import numpy as np

from coronet.images import ImageDecodeError, scale_to_uint8


def dicom_to_grayscale(data: bytes) -> np.ndarray:
    """Applies rescale slope/intercept, the VOI LUT or window, and inverts MONOCHROME1."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"unreadable DICOM file: {exc}") from exc
    if "PixelData" not in ds:
        raise ImageDecodeError("DICOM file has no pixel data")
    syntax = ds.file_meta.get("TransferSyntaxUID", "unknown") if hasattr(ds, "file_meta") else "unknown"
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for missing codecs and bad data
        name = getattr(syntax, "name", str(syntax))
        raise ImageDecodeError(f"cannot decode DICOM pixel data (transfer syntax {name}): {exc}") from exc
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if pixels.ndim == 3:  # colour DICOM: plain luminance
        return scale_to_uint8(pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114]), 255)
    values = apply_modality_lut(pixels, ds)
    values = apply_voi_lut(values, ds) if ("WindowCenter" in ds or "VOILUTSequence" in ds) else values
    gray = scale_to_uint8(np.asarray(values, dtype=np.float64), None)
    if photometric == "MONOCHROME1":  # low values are white in MONOCHROME1
        gray = 255 - gray
    return gray
