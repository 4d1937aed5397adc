"""Shortcut stress tests: how predictions move when the image changes in ways that should not matter.

Each nuisance transform takes a processed 8-bit grayscale image and a strength, where strength 0 is
the image itself. None adds information about disease: a model whose predictions flip under them
(above all towards COVID-19 under a frame, as COVID-19 images are often framed figures from papers)
has learned where an image came from. Transformed images go through the same input function as
prediction (:func:`coronet.images.model_input`), in batches, through the already loaded model.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from coronet.errors import ParamsError
from coronet.images import decode_grayscale, model_input
from coronet.params import Section

Transform = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def _frame(fill: str) -> Transform:
    def paint(gray: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
        """A uniform border over the outer ``strength`` share of each side."""
        h, w = gray.shape
        dy, dx = round(h * strength), round(w * strength)
        out = gray.copy()
        if dy or dx:
            value = int(np.median(gray)) if fill == "median" else 0
            out[:dy], out[h - dy :] = value, value
            out[:, :dx], out[:, w - dx :] = value, value
        return out

    return paint


def crop_zoom(gray: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """The central part without ``strength`` of each side, scaled back to the full size."""
    h, w = gray.shape
    dy, dx = round(h * strength), round(w * strength)
    if not (dy or dx):
        return gray.copy()
    crop = Image.fromarray(gray[dy : h - dy, dx : w - dx])
    return np.asarray(crop.resize((w, h), Image.Resampling.LANCZOS), dtype=np.uint8)


def annotation(gray: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A burned-in white side marker ("R") and arrow, ``strength`` of the side tall, in a random corner."""
    h, w = gray.shape
    size = round(min(h, w) * strength)
    if size < 2:
        return gray.copy()
    image = Image.fromarray(gray)
    draw = ImageDraw.Draw(image)
    corner = int(rng.integers(4))
    x0 = 2 if corner % 2 == 0 else w - 2 - size
    y0 = 2 if corner < 2 else h - 2 - size
    draw.text((x0, y0), "R", fill=255, font_size=max(4, size // 2))
    mid = y0 + size * 3 // 4
    draw.line([(x0, mid), (x0 + size - 1, mid)], fill=255, width=max(1, size // 10))
    tip = x0 + size - 1
    draw.polygon([(tip, mid), (tip - size // 4, mid - size // 6), (tip - size // 4, mid + size // 6)], fill=255)
    return np.asarray(image, dtype=np.uint8)


def jpeg(gray: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Re-encoded as JPEG at quality 100 x (1 - strength)."""
    if strength <= 0:
        return gray.copy()
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="JPEG", quality=max(1, round(100 * (1 - strength))))
    return decode_grayscale(buffer.getvalue())


def downscale(gray: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Down to (1 - strength) of its resolution and back up: detail lost, nothing added."""
    h, w = gray.shape
    small = (max(1, round(w * (1 - strength))), max(1, round(h * (1 - strength))))
    if small == (w, h):
        return gray.copy()
    image = Image.fromarray(gray).resize(small, Image.Resampling.BILINEAR)
    return np.asarray(image.resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)


def gamma(gray: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Gamma 2 ** strength (0: unchanged; negative brightens, positive darkens the mid-tones)."""
    if strength == 0:
        return gray.copy()
    return np.rint(255 * (gray / 255.0) ** (2.0**strength)).astype(np.uint8)


def contrast(gray: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Contrast around the image's mean scaled by 1 + strength."""
    if strength == 0:
        return gray.copy()
    mean = gray.mean()
    return np.clip(np.rint(mean + (gray - mean) * (1 + strength)), 0, 255).astype(np.uint8)


def equalize(gray: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Histogram equalisation, blended with the original by ``strength`` (1: fully equalised)."""
    if strength == 0:
        return gray.copy()
    equalised = np.asarray(ImageOps.equalize(Image.fromarray(gray)), dtype=np.float64)
    return np.rint((1 - strength) * gray + strength * equalised).astype(np.uint8)


def hflip(gray: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Mirrored left-right when strength is 1 (a film read from the other side)."""
    return gray[:, ::-1].copy() if strength >= 0.5 else gray.copy()


TRANSFORMS: dict[str, Transform] = {
    "frame_median": _frame("median"),
    "frame_black": _frame("black"),
    "crop_zoom": crop_zoom,
    "annotation": annotation,
    "jpeg": jpeg,
    "downscale": downscale,
    "gamma": gamma,
    "contrast": contrast,
    "equalize": equalize,
    "hflip": hflip,
}


def apply(name: str, images: list[np.ndarray], strength: float, seed: int) -> list[np.ndarray]:
    """``name`` at ``strength`` on every image; image k draws its randomness from (seed, k) alone."""
    transform = TRANSFORMS[name]
    return [transform(gray, strength, np.random.default_rng([seed, k])) for k, gray in enumerate(images)]


def probabilities(classifier: Any, images: list[np.ndarray], batch_size: int) -> np.ndarray:
    """Class probabilities of processed grayscale images, through the prediction input function."""
    out = [classifier.probabilities(np.asarray(model_input(np.stack(images[i : i + batch_size]),
                                                           classifier.image_size)))
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, len(classifier.classes)))


def compare(baseline: np.ndarray, changed: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """How predictions moved from ``baseline`` to ``changed`` probabilities (rows: images, columns: classes).

    ``flip_to[c]``: of the images not predicted c before, the share predicted c now (for covid: the rate
    at which non-COVID predictions turn COVID). ``flip_from[c]``: of the images predicted c before, the
    share predicted something else now. ``called[c]``: of the images whose true class is not c, the share
    predicted c now.
    """
    before, after = baseline.argmax(axis=1), changed.argmax(axis=1)

    def share(mask: np.ndarray, hit: np.ndarray) -> float | None:
        return float(hit[mask].mean()) if mask.any() else None

    truth = np.array([classes.index(label) for label in labels])
    return {
        "accuracy": float((after == truth).mean()),
        "recall": {c: share(truth == i, after == i) for i, c in enumerate(classes)},
        "flip_rate": float((after != before).mean()),
        "flip_to": {c: share(before != i, after == i) for i, c in enumerate(classes)},
        "flip_from": {c: share(before == i, after != i) for i, c in enumerate(classes)},
        "called": {c: share(truth != i, after == i) for i, c in enumerate(classes)},
        "mean_probability_change": {c: float((changed[:, i] - baseline[:, i]).mean()) for i, c in enumerate(classes)},
    }


def check_params(cfg: Section) -> tuple[dict[str, list[float]], float]:
    """(transform -> strengths, warning threshold) from params ``evaluate.stress``."""
    transforms = cfg["transforms"]
    unknown = sorted(set(transforms) - set(TRANSFORMS))
    if unknown:
        raise ParamsError(f"params.yaml: evaluate.stress.transforms names unknown transform(s) {unknown}; "
                          f"known: {', '.join(TRANSFORMS)}")
    checked = {}
    for name, strengths in transforms.items():
        if not isinstance(strengths, list) or not strengths or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and -1 <= v <= 1 for v in strengths):
            raise ParamsError(f"params.yaml: evaluate.stress.transforms.{name} must be a list of strengths in "
                              f"[-1, 1], got {strengths!r}")
        checked[name] = [float(v) for v in strengths]
    return checked, cfg.number("warn_flip_rate", 0, 1)


def load_images(paths: list[str]) -> list[np.ndarray]:
    """The processed test images (8-bit grayscale PNGs written by the resize stage), through the one decoder."""
    return [decode_grayscale(Path(path).read_bytes()) for path in paths]


def run(classifier: Any, images: list[np.ndarray], labels: list[str], transforms: dict[str, list[float]],
        seed: int, batch_size: int) -> dict[str, Any]:
    """Every transform at every strength on the test images: nested dicts for metrics/stress.json.

    The baseline is predicted by the same function as the transformed images, so any change is theirs.
    """
    classes = classifier.classes
    labels_array = np.asarray(labels)
    baseline = probabilities(classifier, images, batch_size)
    results: dict[str, Any] = {"images": len(images), "baseline": compare(baseline, baseline, labels_array, classes),
                               "transforms": {}}
    for name, strengths in transforms.items():
        results["transforms"][name] = {}
        for strength in strengths:
            changed = probabilities(classifier, apply(name, images, float(strength), seed), batch_size)
            results["transforms"][name][f"{float(strength):g}"] = compare(baseline, changed, labels_array, classes)
    return results


def warnings(results: dict[str, Any], threshold: float) -> list[str]:
    """One sentence per transform and strength that flips more than ``threshold`` of the predictions."""
    found = []
    for name, by_strength in results["transforms"].items():
        for strength, stats in by_strength.items():
            if stats["flip_rate"] > threshold:
                towards = max(stats["flip_to"].items(), key=lambda kv: kv[1] or 0)
                found.append(f"{name} at strength {strength} changes {stats['flip_rate']:.0%} of the test predictions "
                             f"(most often towards {towards[0]}: {towards[1] or 0:.0%} of the others), though it adds "
                             "no information about disease")
    return found
