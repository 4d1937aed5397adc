"""Code tier: DICOM through the one decoder (pydicom): LUTs, windowing, MONOCHROME1, bad files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless

from conftest import (
    RAMP,
    make_dicom,
)
from coronet.imaging.decode import ImageDecodeError, decode_grayscale


def test_monochrome2_12bit_keeps_its_full_range():
    out = decode_grayscale(make_dicom(RAMP))
    assert out.shape == RAMP.shape and out.dtype == np.uint8
    assert out[0, 0] == 0 and out[0, -1] == 255 and np.all(np.diff(out[0].astype(int)) >= 0)


def test_monochrome1_is_inverted():
    normal = decode_grayscale(make_dicom(RAMP))
    inverted = decode_grayscale(make_dicom(RAMP, "MONOCHROME1"))
    np.testing.assert_array_equal(inverted, 255 - normal)


def test_rescale_and_window_are_applied():
    # stored 0..4095 -> HU = 2 * stored - 1024; a window of 1000 +- 200 HU clips everything outside it
    out = decode_grayscale(make_dicom(RAMP, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=1000,
                                      WindowWidth=400))
    hu = 2 * RAMP[0].astype(float) - 1024
    assert (out[0][hu < 790] == 0).all() and (out[0][hu > 1210] == 255).all()
    inside = out[0][(hu > 850) & (hu < 1150)]
    assert inside.size and (inside > 0).all() and (inside < 255).all()


def test_dicom_without_pixel_data():
    with pytest.raises(ImageDecodeError, match="no pixel data"):
        decode_grayscale(make_dicom(None))


def test_compressed_syntax_that_cannot_be_decoded_is_named():
    data = make_dicom(None, syntax=JPEG2000Lossless, Rows=16, Columns=64, SamplesPerPixel=1,
                      PhotometricInterpretation="MONOCHROME2", BitsAllocated=16, BitsStored=12, HighBit=11,
                      PixelRepresentation=0, PixelData=encapsulate([b"\xff\x4f\xff\x51 not a codestream"]))
    with pytest.raises(ImageDecodeError, match=r"cannot decode DICOM pixel data.*JPEG 2000"):
        decode_grayscale(data)


def deflated_dicom(pixels: np.ndarray) -> bytes:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    return make_dicom(pixels, syntax=DeflatedExplicitVRLittleEndian)


def test_dicom_pixel_limit_applies_before_decoding(monkeypatch):
    from PIL import Image as PILImage

    data = deflated_dicom(np.zeros((200, 300), np.uint16))
    assert decode_grayscale(data).shape == (200, 300)  # deflated DICOM decodes within the limit
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(ImageDecodeError, match="300 x 200 pixels is over the 10,000-pixel limit"):
        decode_grayscale(data)
    with pytest.raises(ImageDecodeError, match="over the 10,000-pixel limit"):
        decode_grayscale(make_dicom(np.zeros((200, 300), np.uint16)))


def test_deflated_dicom_is_never_inflated_past_the_limit(monkeypatch):
    from PIL import Image as PILImage

    import coronet.imaging.decode

    # 120 kB of pixels that deflate to almost nothing: a small file claiming a large image.
    data = deflated_dicom(np.zeros((200, 300), np.uint16))
    assert len(data) < 2_000
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 10_000)
    monkeypatch.setattr(coronet.imaging.decode, "METADATA_ALLOWANCE", 0)
    with pytest.raises(ImageDecodeError, match="inflates to more than 20,000 bytes"):
        decode_grayscale(data)


def test_multiframe_dicom_decodes_its_first_frame():
    frames = np.stack([RAMP, RAMP[:, ::-1], np.zeros_like(RAMP)])
    data = make_dicom(RAMP, NumberOfFrames=3)
    from pydicom import dcmread

    ds = dcmread(io.BytesIO(data))
    ds.PixelData = frames.astype("<u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    out = decode_grayscale(buffer.getvalue())
    assert out.shape == RAMP.shape
    np.testing.assert_array_equal(out, decode_grayscale(make_dicom(RAMP)))


@pytest.mark.parametrize("slope", [0, float("nan")])
def test_rescale_slope_zero_or_nan_is_an_error(slope):
    with pytest.raises(ImageDecodeError, match="RescaleSlope"):
        decode_grayscale(make_dicom(RAMP, RescaleSlope=slope))
