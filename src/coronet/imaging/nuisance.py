"""Nuisance transforms: changes to a chest X-ray that carry no information about disease.

The one home for what a frame, a burned-in marker, a crop or a lost resolution is. Three users:
- the stress tests (:mod:`coronet.evaluation.stress`) apply each :data:`TRANSFORMS` entry to the test
  images at fixed strengths and measure how often the model's answer moves;
- training's nuisance augmentation (:mod:`coronet.model.dataset`, params ``train.nuisance``) applies the
  :data:`AUGMENTATIONS` at random strengths to training images, so the model cannot use them as evidence;
- the input checks (:mod:`coronet.serving.checks`) look for the same frame on an uploaded image.
Every function takes and returns an 8-bit grayscale array (H, W) and a strength; strength 0 (or the
identity value) returns the image unchanged. Randomness (a marker's corner) comes from the caller's
generator, so results are a pure function of the seed.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageOps

Fn = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
MARKER_TEXTS = ("R", "L", "AP", "PA", "SUPINE", "PORTABLE")


@dataclass(frozen=True)
class Transform:
    fn: Fn
    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    what: str = ""  # one line for people: what the strength means

    @property
    def valid(self) -> str:
        return (f"strengths in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open else ']'}")

    def accepts(self, strength: float) -> bool:
        above = strength > self.low if self.low_open else strength >= self.low
        below = strength < self.high if self.high_open else strength <= self.high
        return above and below


def frame(gray: np.ndarray, share: float, fill: int) -> np.ndarray:
    """A uniform border of value ``fill`` over the outer ``share`` of each side (a framed figure, padding)."""
    h, w = gray.shape
    dy, dx = round(h * share), round(w * share)
    out = gray.copy()
    if dy or dx:
        out[:dy], out[h - dy :] = fill, fill
        out[:, :dx], out[:, w - dx :] = fill, fill
    return out


def crop_zoom(gray: np.ndarray, share: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """The central part without ``share`` of each side, scaled back to the full size."""
    h, w = gray.shape
    dy, dx = round(h * share), round(w * share)
    if not (dy or dx):
        return gray.copy()
    crop = Image.fromarray(gray[dy : h - dy, dx : w - dx])
    return np.asarray(crop.resize((w, h), Image.Resampling.LANCZOS), dtype=np.uint8)


def marker(gray: np.ndarray, share: float, rng: np.random.Generator, text: str = "R", arrow: bool = True
           ) -> np.ndarray:
    """A burned-in white side marker (``text``) and arrow, ``share`` of the side tall, in a random corner."""
    h, w = gray.shape
    size = round(min(h, w) * share)
    if size < 2:
        return gray.copy()
    image = Image.fromarray(gray)
    draw = ImageDraw.Draw(image)
    corner = int(rng.integers(4))
    x0 = 2 if corner % 2 == 0 else w - 2 - size
    y0 = 2 if corner < 2 else h - 2 - size
    draw.text((x0, y0), text, fill=255, font_size=max(4, size // (1 + len(text) // 2) // 2))
    if arrow:
        mid = y0 + size * 3 // 4
        draw.line([(x0, mid), (x0 + size - 1, mid)], fill=255, width=max(1, size // 10))
        tip = x0 + size - 1
        draw.polygon([(tip, mid), (tip - size // 4, mid - size // 6), (tip - size // 4, mid + size // 6)], fill=255)
    return np.asarray(image, dtype=np.uint8)


def jpeg(gray: np.ndarray, strength: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Re-encoded as JPEG at quality 100 x (1 - strength)."""
    if strength <= 0:
        return gray.copy()
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="JPEG", quality=max(1, round(100 * (1 - strength))))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("L"), dtype=np.uint8)


def downscale(gray: np.ndarray, strength: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Down to (1 - strength) of its resolution and back up: detail lost, nothing added."""
    h, w = gray.shape
    small = (max(1, round(w * (1 - strength))), max(1, round(h * (1 - strength))))
    if small == (w, h):
        return gray.copy()
    image = Image.fromarray(gray).resize(small, Image.Resampling.BILINEAR)
    return np.asarray(image.resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)


def gamma(gray: np.ndarray, strength: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Gamma 2 ** strength (0: unchanged; negative brightens, positive darkens the mid-tones)."""
    if strength == 0:
        return gray.copy()
    return np.rint(255 * (gray / 255.0) ** (2.0**strength)).astype(np.uint8)


def contrast(gray: np.ndarray, strength: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Contrast around the image's mean scaled by 1 + strength."""
    if strength == 0:
        return gray.copy()
    mean = gray.mean()
    return np.clip(np.rint(mean + (gray - mean) * (1 + strength)), 0, 255).astype(np.uint8)


def equalize(gray: np.ndarray, strength: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Histogram equalisation, blended with the original by ``strength`` (1: fully equalised)."""
    if strength == 0:
        return gray.copy()
    equalised = np.asarray(ImageOps.equalize(Image.fromarray(gray)), dtype=np.float64)
    return np.rint((1 - strength) * gray + strength * equalised).astype(np.uint8)


def hflip(gray: np.ndarray, strength: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Mirrored left-right when strength is 1 (a film read from the other side)."""
    return gray[:, ::-1].copy() if strength >= 0.5 else gray.copy()


def lung_box(shape: tuple[int, int], share: float) -> tuple[slice, slice]:
    """The central region covering the lung fields of a PA/AP film: ``share`` of the height and width."""
    h, w = shape
    dy, dx = round(h * (1 - share) / 2), round(w * (1 - share) / 2)
    return slice(dy, h - dy), slice(dx, w - dx)


def lungs_removed(gray: np.ndarray, share: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """The central region (the lung fields) filled with the image's median: only the outside is left
    (Maguolo & Nanni 2021). A model still far above chance here reads something other than the lungs."""
    out = gray.copy()
    if share > 0:
        out[lung_box(gray.shape, share)] = int(np.median(gray))
    return out


def lungs_only(gray: np.ndarray, share: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """The converse: everything outside the central region filled with the image's median."""
    if share >= 1:
        return gray.copy()
    rows, cols = lung_box(gray.shape, share)
    out = np.full_like(gray, int(np.median(gray)))
    out[rows, cols] = gray[rows, cols]
    return out


TRANSFORMS: dict[str, Transform] = {
    # A frame or crop of half of each side leaves nothing of the image: the ranges stop short of it.
    "frame_median": Transform(lambda g, s, r: frame(g, s, int(np.median(g))), 0, 0.5, high_open=True,
                              what="a uniform border over this share of each side, filled with the image's median"),
    "frame_black": Transform(lambda g, s, r: frame(g, s, 0), 0, 0.5, high_open=True,
                             what="the same border, black"),
    "crop_zoom": Transform(crop_zoom, 0, 0.5, high_open=True,
                           what="the centre without this share of each side, scaled back up"),
    "annotation": Transform(lambda g, s, r: marker(g, s, r), 0, 0.5,
                            what="a burned-in side marker and arrow, this share of the side tall"),
    "jpeg": Transform(jpeg, 0, 1, high_open=True, what="JPEG re-compression at quality 100 x (1 - strength)"),
    "downscale": Transform(downscale, 0, 1, high_open=True, what="resolution lost by this share, scaled back up"),
    "gamma": Transform(gamma, -3, 3, what="gamma 2 ** strength"),
    "contrast": Transform(contrast, -1, 3, low_open=True, what="contrast x (1 + strength)"),
    "equalize": Transform(equalize, 0, 1, what="histogram equalisation, blended (1: full)"),
    "hflip": Transform(hflip, 0, 1, what="left-right mirror (1)"),
    "lungs_removed": Transform(lungs_removed, 0, 1, high_open=True,
                               what="the central region (this share of each dimension) filled with the median"),
    "lungs_only": Transform(lungs_only, 0, 1, low_open=True,
                            what="everything outside that central region filled with the median"),
}


def _random_frame(gray: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """A frame of a random fill: the image's median, black, white or any grey."""
    fill = [int(np.median(gray)), 0, 255, int(rng.integers(0, 256))][int(rng.integers(4))]
    return frame(gray, share, fill)


def _random_marker(gray: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    return marker(gray, share, rng, str(rng.choice(MARKER_TEXTS)), arrow=bool(rng.integers(2)))


# Training's nuisance augmentation (params train.nuisance): the stress transforms' maths at random
# strengths; the valid strengths are those of the transform named in ``like``.
AUGMENTATIONS: dict[str, tuple[Fn, str]] = {
    "frame": (_random_frame, "frame_median"),
    "marker": (_random_marker, "annotation"),
    "crop_zoom": (crop_zoom, "crop_zoom"),
    "jpeg": (jpeg, "jpeg"),
    "downscale": (downscale, "downscale"),
    "gamma": (gamma, "gamma"),
}


def check_strength(name: str, strength: float) -> None:
    """ValueError naming the valid range when ``strength`` is outside what transform ``name`` means."""
    transform = TRANSFORMS[AUGMENTATIONS[name][1] if name in AUGMENTATIONS else name]
    if not transform.accepts(strength):
        raise ValueError(f"{name} takes {transform.valid} ({transform.what}), got {strength:g}")
    if name == "hflip" and strength not in (0, 1):
        raise ValueError(f"hflip takes 0 or 1, got {strength:g}")


def apply(name: str, images: list[np.ndarray], strength: float, seed: int) -> list[np.ndarray]:
    """Stress transform ``name`` at ``strength`` on every image; image k draws from (seed, k) alone."""
    fn = TRANSFORMS[name].fn
    return [fn(gray, strength, np.random.default_rng([seed, k])) for k, gray in enumerate(images)]


def augment(gray: np.ndarray, steps: dict[str, tuple[float, float, float]], entropy: list[int]) -> np.ndarray:
    """One training image through the nuisance augmentations ``steps`` (name -> (p, low, high)), in the
    order given: each applied with probability p at a strength drawn from [low, high]. Step i draws from
    its own generator seeded by (``entropy``, i), so whether one step fires never shifts another's draws."""
    for i, (name, (p, low, high)) in enumerate(steps.items()):
        rng = np.random.default_rng([*entropy, i])
        if rng.uniform() < p:
            gray = AUGMENTATIONS[name][0](gray, rng.uniform(low, high), rng)
    return gray
