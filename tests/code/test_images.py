"""Code tier: the one decoder and resize on fixtures with the real sources' quirks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import REFERENCE, encoded, make_dicom
from coronet.imaging.decode import ImageDecodeError, decode_grayscale, fit_square, max_pixels
from coronet.model.dataset import model_input


def gradient(width: int = 64, height: int = 48) -> np.ndarray:
    return np.tile(np.linspace(0, 255, width).astype(np.uint8), (height, 1))


def test_png_named_jpg_is_decoded_by_content(tmp_path):
    path = tmp_path / "really-a-png.jpg"
    path.write_bytes(encoded(Image.fromarray(gradient()), "PNG"))
    out = decode_grayscale(path.read_bytes())
    assert out.dtype == np.uint8 and out.shape == (48, 64)
    assert np.array_equal(out, gradient())  # PNG is lossless: exactly the pixels written


def test_rgba_composites_transparent_pixels_onto_black():
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[:, :5, 3] = 255  # left half opaque, right half fully transparent
    out = decode_grayscale(encoded(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert (out[:, :5] == 200).all() and (out[:, 5:] == 0).all()


def test_palette_image_uses_its_palette():
    image = Image.fromarray(gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    out = decode_grayscale(encoded(image, "PNG"))
    expected = np.asarray(image.convert("L"))
    assert np.array_equal(out, expected)
    assert out.max() > 200 and out.min() < 30  # not index values 0..15


def test_16bit_is_scaled_not_clipped():
    values = np.linspace(0, 65535, 256).astype(np.uint16).reshape(16, 16)
    out = decode_grayscale(encoded(Image.fromarray(values), "PNG"))
    assert out.min() == 0 and out.max() == 255
    assert np.all(np.diff(out.ravel().astype(int)) >= 0)  # monotonic: the full range kept
    assert out[8, 0] == round(values[8, 0] / 257)


def test_exif_orientation_is_applied():
    image = Image.fromarray(gradient(64, 32)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = decode_grayscale(encoded(image, "JPEG", exif=exif.tobytes()))
    assert out.shape == (64, 32)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"patientid,finding\n1,COVID-19\n", "not a recognised image format"),
        (None, "truncated"),
    ],
)
def test_bad_inputs_raise_a_specific_error(data, reason):
    if data is None:
        full = encoded(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)), "JPEG")
        data = full[: len(full) // 2]
    with pytest.raises(ImageDecodeError, match=reason):
        decode_grayscale(data)


@pytest.mark.parametrize("factor", [1.5, 2.5])  # Pillow warns above its limit and refuses above twice it
def test_decompression_bombs_are_refused_with_our_limit_in_words(monkeypatch, factor):
    """A bomb read "corrupt or truncated image data", and above twice the limit the
    message quoted Pillow's figure, not ours."""
    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 10_000)
    side = int((10_000 * factor) ** 0.5) + 1
    data = encoded(Image.fromarray(np.zeros((side, side), np.uint8)), "PNG")
    with pytest.raises(ImageDecodeError) as info:
        decode_grayscale(data)
    message = str(info.value)
    assert f"image of {side * side:,} pixels is over the {max_pixels():,}-pixel limit" in message
    assert "corrupt" not in message and "truncated" not in message


def test_fit_square_stretch_and_pad():
    wide = np.full((50, 100), 255, dtype=np.uint8)
    stretched = fit_square(wide, 32, "stretch")
    padded = fit_square(wide, 32, "pad")
    assert stretched.shape == padded.shape == (32, 32)
    assert (stretched > 250).all()
    assert (padded[0] == 0).all() and (padded[16] > 250).all()  # black bars above and below
    with pytest.raises(ValueError, match="stretch"):
        fit_square(wide, 32, "crop")


def test_model_input_is_three_channel_float_in_pixel_range():
    out = np.asarray(model_input(gradient(), 71))
    assert out.shape == (71, 71, 3) and out.dtype == np.float32
    assert np.array_equal(out[..., 0], out[..., 2])
    assert out.min() >= 0 and out.max() <= 255 and out.max() > 200


@pytest.mark.skipif(not (REFERENCE / "quirky-images").is_dir(), reason="../shared/reference not present")
def test_real_quirky_images_all_decode():
    files = sorted((REFERENCE / "quirky-images").iterdir())
    assert files
    for path in files:
        out = decode_grayscale(path.read_bytes())
        assert out.dtype == np.uint8 and out.ndim == 2 and min(out.shape) >= 100, path.name
        assert out.std() > 5, path.name  # a real picture, not a flat field from a botched conversion


DECODE_PEAK = """
import resource, sys
from coronet.imaging.decode import decode_grayscale
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
gray = decode_grayscale(data)
print(gray.shape[0], gray.shape[1], gray.dtype, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def test_a_large_16_bit_png_decodes_within_a_memory_budget(tmp_path):
    """A 485 KB 16-bit 7700 x 7700 PNG took ~1.5 GB to classify: its pixels went through
    int64 and float64 copies (8 bytes a pixel each, three at once). The budget: the decoded 16-bit image, one
    index array of the same type and the 8-bit result, 5 bytes a pixel (296 MB), with a third to spare."""
    import subprocess
    import sys

    side = 7700
    pixels = np.zeros((side, side), dtype=np.uint16)
    pixels[::7, ::3] = 40000
    Image.fromarray(pixels).save(tmp_path / "large.png")
    done = subprocess.run([sys.executable, "-c", DECODE_PEAK, str(tmp_path / "large.png")], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows, columns, dtype, grown = done.stdout.split()
    assert (int(rows), int(columns), dtype) == (side, side, "uint8")
    assert int(grown) < 5 * side * side * 4 / 3, f"{int(grown) / 2**20:.0f} MB"


def test_12bit_content_in_a_16bit_png_is_scaled_by_its_real_range():
    twelve_bit = np.linspace(0, 4095, 64 * 16).astype(np.uint16).reshape(16, 64)
    out = decode_grayscale(encoded(twelve_bit))
    assert out.min() == 0 and out.max() == 255  # not 0..16, as scaling by 65535 gave
    np.testing.assert_array_equal(out, decode_grayscale(make_dicom(twelve_bit)))
