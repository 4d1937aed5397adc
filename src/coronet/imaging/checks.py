"""Input checks: properties of an image that this kind of model is known to be fooled by, measured on the
image itself, and what the model's own stress tests measured for each.

One implementation for every door an image comes in by: merge (a source file that cannot be an X-ray is
rejected), ``coronet predict`` (the ``checks`` column), the served model (the ``checks`` field) and the
page. Refusals (too few pixels, a strip, a uniform image) mean there is nothing to classify; warnings
(a uniform border or padding, burned-in text or markers near the edges, a resolution below what the model
was trained at) mean the answer may follow the nuisance rather than the lungs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

MIN_SIDE = 32  # pixels: below this there is no chest to see
MAX_ASPECT = 4.0  # a strip, not a film
MIN_STD = 1.0  # grey levels: a uniform image
BORDER_WARN = 0.03  # share of a side covered by a uniform band
MARKER_WARN = 0.004  # share of a corner covered by thin bright strokes (text, arrows)
# A uniform line: its spread, and its distance from the band's first line. Calibrated on real-mini and
# synthetic films: smooth real backgrounds and the phantoms' gradients pass, JPEG-compressed frames do not.
LINE_STD, LINE_STEP = 1.0, 3.0
ANALYSIS_SIDE = 256  # markers are looked for on a copy of this size


@dataclass(frozen=True)
class Finding:
    check: str  # too_small | strip | uniform | border | marker | low_resolution
    severity: str  # refuse | warn
    value: float  # what was measured: pixels, a share, a ratio
    message: str
    level: float = 0.0  # a border's grey level (0 black, 255 white)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _band(lines: np.ndarray) -> int:
    """How many lines from the first one (rows of ``lines``) are uniform and of the first one's level."""
    first = float(lines[0].mean())
    for k, line in enumerate(lines):
        if line.std() > LINE_STD or abs(float(line.mean()) - first) > LINE_STEP:
            return k
    return len(lines)


def border_shares(gray: np.ndarray) -> dict[str, float]:
    """Per side, the share of the image covered by a uniform band along it (a frame, padding)."""
    g = gray.astype(np.float64)
    h, w = g.shape
    return {"top": _band(g) / h, "bottom": _band(g[::-1]) / h, "left": _band(g.T) / w, "right": _band(g.T[::-1]) / w}


def edge_level(gray: np.ndarray, side: str) -> float:
    """The mean grey level of the outermost line on ``side``."""
    line = {"top": gray[0], "bottom": gray[-1], "left": gray[:, 0], "right": gray[:, -1]}[side]
    return float(line.mean())


def marker_share(gray: np.ndarray) -> float:
    """The largest share, over the edge bands (a fifth of the image along each side, in thirds), of thin
    bright strokes: pixels far brighter than their neighbourhood's median, which text, side markers and
    arrows are and anatomy is not."""
    image = Image.fromarray(gray)
    image.thumbnail((ANALYSIS_SIDE, ANALYSIS_SIDE), Image.Resampling.BILINEAR)
    small = np.asarray(image, dtype=np.int16)
    background = np.asarray(image.filter(ImageFilter.MedianFilter(7)), dtype=np.int16)
    strokes = (small >= 150) & (small - background >= 60)
    h, w = strokes.shape
    bh, bw = max(1, h // 5), max(1, w // 5)
    bands = [strokes[:bh], strokes[-bh:], strokes[:, :bw].T, strokes[:, -bw:].T]  # each as (across, along)
    # in thirds along each band: a marker is a small patch, which a whole band's area would dilute
    return float(max(part.mean() for band in bands for part in np.array_split(band, 3, axis=1)))


def inspect(gray: np.ndarray, trained_size: int = 224) -> list[Finding]:
    """Every finding for one decoded 8-bit grayscale image; ``trained_size``: the resize stage's size."""
    h, w = gray.shape
    if min(h, w) < MIN_SIDE:
        return [Finding("too_small", "refuse", float(min(h, w)),
                        f"image is {w} x {h} pixels: too small to be a chest X-ray (at least {MIN_SIDE} per side)")]
    if max(h, w) / min(h, w) > MAX_ASPECT:
        return [Finding("strip", "refuse", max(h, w) / min(h, w),
                        f"image is {w} x {h} pixels (aspect ratio {max(h, w) / min(h, w):.0f}:1): not a chest X-ray")]
    if float(gray.std()) < MIN_STD:
        return [Finding("uniform", "refuse", float(gray.std()),
                        f"image is uniform (every pixel about {int(np.median(gray))}): nothing to classify")]
    found = []
    sides = border_shares(gray)
    widest = max(sides, key=sides.get)
    if sides[widest] >= BORDER_WARN:
        framed = [s for s, v in sides.items() if v >= BORDER_WARN]
        found.append(Finding("border", "warn", round(sides[widest], 3),
                             f"uniform border or padding ({', '.join(framed)}; up to {sides[widest]:.0%} of a side)",
                             edge_level(gray, widest)))
    markers = marker_share(gray)
    if markers >= MARKER_WARN:
        found.append(Finding("marker", "warn", round(markers, 4), "burned-in text or markers near the edges"))
    if min(h, w) < trained_size:
        found.append(Finding("low_resolution", "warn", float(min(h, w)),
                             f"{w} x {h} pixels, below the {trained_size} px the model was trained at"))
    return found


def refusal(findings: list[Finding]) -> str:
    """The reason the image cannot be classified, or "" when it can."""
    return next((f.message for f in findings if f.severity == "refuse"), "")


# What the model's own stress tests (metrics/stress.json) measured for each kind of finding.
STRESS_OF = {"border": ("frame_median", "frame_black"), "marker": ("annotation",), "low_resolution": ("downscale",)}
DARK = 40  # a border darker than this is compared with the black-frame stress test, others with the median one


def stress_names(finding: Finding) -> tuple[str, ...]:
    if finding.check == "border":
        return ("frame_black",) if finding.level < DARK else ("frame_median",)
    return STRESS_OF.get(finding.check, ())


def stress_strength(finding: Finding, trained_size: int = 224) -> float:
    """The stress-test strength that corresponds to what was measured on the image."""
    if finding.check == "low_resolution":
        return 1 - finding.value / trained_size
    if finding.check == "marker":
        return 0.15  # the stress test's marker size; a measured share of strokes is no size
    return finding.value


def measured_effect(finding: Finding, stress: dict[str, Any] | None, trained_size: int = 224) -> str:
    """"a 20% border changed 70% of this model's test answers (34 images)": the stress result nearest to
    what was found, from this model's metrics/stress.json; "" when the model has none for it."""
    if not stress or finding.check not in STRESS_OF:
        return ""
    wanted = stress_strength(finding, trained_size)
    options = [(abs(float(strength) - wanted), name, strength, stats)
               for name in stress_names(finding)
               for strength, stats in stress.get("transforms", {}).get(name, {}).items()]
    if not options:
        return ""
    _, name, strength, stats = min(options, key=lambda o: (o[0], o[1]))
    what = {"frame_median": f"a {float(strength):.0%} uniform border", "frame_black": f"a {float(strength):.0%} black "
            "border", "annotation": "a burned-in marker", "downscale": f"{float(strength):.0%} less resolution"}[name]
    towards = stress.get("screening_class") or max(stats["flip_to"], key=lambda c: stats["flip_to"][c] or 0)
    to_share = stats["flip_to"].get(towards)
    extra = f", turning {to_share:.0%} of the others into {towards}" if to_share else ""
    return (f"in this model's stress tests {what} changed {stats['flip_rate']:.0%} of its answers on "
            f"{stress.get('images', '?')} test images{extra}")
