"""Synthetic chest films for the offline twins of the sources (:mod:`coronet.data.sources`).

Each class gets its own finding, drawn on a chest-like phantom, so a CNN has something real to learn:
covid = bilateral peripheral ground-glass blobs; bacterial = one dense lobar consolidation; viral =
a coarse bilateral reticular pattern; normal = clear lungs. :func:`publication_look` gives a film the
look of a figure from a paper (a frame, burned-in labels), which is how the real COVID-19 collection
differs from hospital films: the confound the shortcut evidence measures. Everything is a pure function
of the generator passed in.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from coronet.errors import ParamsError
from coronet.imaging import nuisance

ZIP_TIME = (2020, 1, 1, 0, 0, 0)


# Each lung's centre (x, y) and radii, as shares of the image side.
Lungs = list[tuple[float, float, float, float]]


def _ground_glass(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, lungs: Lungs) -> np.ndarray:
    """covid: bilateral peripheral ground-glass blobs."""
    finding = np.zeros_like(xx)
    for cx, cy, rx, ry in lungs:
        for _ in range(rng.integers(2, 4)):
            side = np.sign(cx - 0.5)
            bx = cx + side * rng.uniform(0.2, 0.7) * rx
            by = cy + rng.uniform(0.0, 0.7) * ry
            sigma = rng.uniform(0.04, 0.06)
            finding += rng.uniform(45, 65) * np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * sigma**2))
    return finding


def _lobar(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, lungs: Lungs) -> np.ndarray:
    """pneumonia_bacterial: one dense lobar consolidation."""
    cx, cy, rx, ry = lungs[rng.integers(0, 2)]
    bx, by = cx + rng.uniform(-0.3, 0.3) * rx, cy + rng.uniform(-0.2, 0.5) * ry
    return rng.uniform(85, 105) * (((xx - bx) / (0.7 * rx)) ** 2 + ((yy - by) / (0.35 * ry)) ** 2 < 1)


def _reticular(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, lungs: Lungs) -> np.ndarray:
    """pneumonia_viral: a coarse bilateral reticular pattern."""
    freq = rng.uniform(9, 12)
    phase = rng.uniform(0, 1, size=2)
    mesh = (np.abs(np.sin(np.pi * (xx * freq + phase[0]))) < 0.35) | (
        np.abs(np.sin(np.pi * (yy * freq + phase[1]))) < 0.35
    )
    return rng.uniform(35, 45) * mesh


def _clear(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, lungs: Lungs) -> np.ndarray:
    """normal (and a film without a class): clear lungs."""
    return np.zeros_like(xx)


# Class -> its finding: (rng, x, y, lungs) -> brightness added inside the lungs. A class the twins can draw is one
# entry here (ARCHITECTURE.md, "Adding or renaming a class").
FINDINGS: dict[str, Callable[[np.random.Generator, np.ndarray, np.ndarray, Lungs], np.ndarray]] = {
    "covid": _ground_glass,
    "normal": _clear,
    "pneumonia_bacterial": _lobar,
    "pneumonia_viral": _reticular,
}


def check_drawable(classes: list[str]) -> None:
    """A ParamsError naming the classes the synthetic twins cannot draw: they would otherwise come out as
    clear lungs, a class the model could never tell from normal."""
    if missing := [c for c in classes if c not in FINDINGS]:
        raise ParamsError(f"params.yaml: classes {missing} have no look in the synthetic twins (they draw "
                          f"{', '.join(FINDINGS)}): add a finding for each to coronet.data.phantom.FINDINGS, or "
                          "run on real archives (download.source: upstream)")


def draw_xray(rng: np.random.Generator, label: str, size: int) -> np.ndarray:
    """A chest-like 8-bit grayscale phantom with the class's finding ("" for a film without a class)."""
    if label and label not in FINDINGS:
        raise ValueError(f"the phantom has no finding for class {label!r} (it draws {', '.join(FINDINGS)})")
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    # Patient positioning and exposure differ from film to film, as in real collections (without this,
    # distinct phantoms look like near duplicates to a perceptual hash).
    scale, turn = rng.uniform(0.85, 1.15), np.radians(rng.uniform(-6, 6))
    dx, dy = xx - 0.5 - rng.uniform(-0.08, 0.08), yy - 0.5 - rng.uniform(-0.08, 0.08)
    xx = (dx * np.cos(turn) - dy * np.sin(turn)) / scale + 0.5
    yy = (dx * np.sin(turn) + dy * np.cos(turn)) / scale + 0.5
    image = 35 + 30 * yy
    torso = ((xx - 0.5) / rng.uniform(0.40, 0.46)) ** 2 + ((yy - 0.56) / 0.52) ** 2 < 1
    image += 95 * torso
    lungs = np.zeros_like(image, dtype=bool)
    centres = []
    for side in (-1, 1):
        cx, cy = 0.5 + side * rng.uniform(0.15, 0.19), rng.uniform(0.47, 0.53)
        rx, ry = rng.uniform(0.11, 0.14), rng.uniform(0.25, 0.30)
        lungs |= ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
        centres.append((cx, cy, rx, ry))
    image -= 70 * lungs
    image += 60 * (np.abs(xx - 0.5) < 0.025) * torso  # spine
    image += 12 * lungs * (np.sin(2 * np.pi * (yy * 14 + 3 * (xx - 0.5) ** 2)) > 0.7)  # ribs
    image += FINDINGS[label or "normal"](rng, xx, yy, centres) * lungs
    image = image * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20)
    image += rng.normal(0, 6, size=image.shape)
    out = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2))
    return np.asarray(out)


def encode(gray: np.ndarray, fmt: str, mode: str = "L", size: tuple[int, int] | None = None) -> bytes:
    image = Image.fromarray(gray)
    if size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    if mode == "RGBA":
        image = image.convert("RGBA")
    elif mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    elif mode != "L":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def write_zip(path: Path, entries: Iterable[tuple[str, bytes]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)


def publication_look(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A film as papers print it: often framed (white or black, of varying width) and often labelled with
    burned-in text or an arrow. The frame and marker are the nuisance transforms' own."""
    if rng.uniform() < 0.6:
        gray = nuisance.frame(gray, float(rng.uniform(0.04, 0.12)), int(rng.choice([0, 255])))
    if rng.uniform() < 0.4:
        gray = nuisance.marker(gray, float(rng.uniform(0.1, 0.2)), rng, str(rng.choice(nuisance.MARKER_TEXTS)))
    return gray


def hospital_look(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A film as one hospital's computed radiography system stores it, unlike both other twins: brighter and
    flatter (its processing curve), dark collimation strips at the sides, and a small lead "R" marker near the
    top edge of every film (no figure frame, no burned-in text)."""
    gray = nuisance.gamma(nuisance.contrast(gray, -0.25), -0.4)
    out = gray.copy()
    width = max(1, int(out.shape[1] * rng.uniform(0.03, 0.06)))
    out[:, :width] = out[:, -width:] = 10
    side = max(4, out.shape[0] // 16)
    top, left = max(1, out.shape[0] // 30), out.shape[1] - width - 2 * side
    out[top : top + side, left : left + side] = 245
    out[top + side // 4 : top + 3 * side // 4, left + side // 3 : left + 2 * side // 3] = 40
    return out


def clinic_look(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A film as a large clinical centre archives it (NIH's), unlike the other twins: darker and harder (its
    processing curve), a soft vignette where the detector's edges fall off, and a small bright lead marker low on
    one side."""
    gray = nuisance.gamma(nuisance.contrast(gray, 0.2), 0.35)
    yy, xx = np.mgrid[0 : gray.shape[0], 0 : gray.shape[1]] / max(gray.shape)
    fall = 1 - 0.35 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
    out = np.clip(gray * fall, 0, 255).astype(np.uint8)
    side = max(4, out.shape[0] // 20)
    top, left = out.shape[0] - 3 * side, side if rng.uniform() < 0.5 else out.shape[1] - 2 * side
    out[top : top + side, left : left + side] = 250
    return out
