"""Code tier: DICOM through the one decoder (pydicom): LUTs, windowing, MONOCHROME1, bad files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, SecondaryCaptureImageStorage, generate_uid

from coronet.images import ImageDecodeError, decode_grayscale


def make_dicom(pixels: np.ndarray | None, photometric: str = "MONOCHROME2", syntax=ExplicitVRLittleEndian,
               **attrs: object) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = pixels.astype("<u2").tobytes()
    for key, value in attrs.items():
        setattr(ds, key, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


RAMP = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (16, 1))


def test_monochrome2_12bit_keeps_its_full_range():
    out = decode_grayscale(make_dicom(RAMP))
    assert out.shape == (16, 64) and out.dtype == np.uint8
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
