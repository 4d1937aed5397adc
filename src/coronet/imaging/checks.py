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

from coronet.records import StressRecord

MIN_SIDE = 32  # pixels: below this there is no chest to see
MAX_ASPECT = 4.0  # a strip, not a film
MIN_STD = 1.0  # grey levels: a uniform image
BORDER_WARN = 0.03  # share of a side covered by a uniform band
MARKER_WARN = 0.004  # share of a corner covered by thin bright strokes (text, arrows)
# Share of the image covered by small near-white glyphs along its edges: a hospital's lead side marker ("D",
# "L", "R"), a printed label. Measured on the real films of ../shared/reference (docs/operations.md): 0.0009 and
# more on each of Actualmed's 9 marked films, at most 0.0001 on its clean one and on the public collection's
# clean films.
GLYPH_WARN = 0.0008
# What the checks cannot see, said wherever they answer: a clean bill covers only what they look for.
BLIND_SPOTS = ("The checks look for a uniform border, burned-in text and side markers near the edges, and low "
               "resolution. They cannot see markers inside the lungs, grey or handwritten annotations, tubes, "
               "wires and electrodes, the patient's age or position, or the hospital and machine the film came "
               "from, all of which a model may read. Of 47 marked films of the public archives they missed 7.")
GLYPH_SIDE = 512  # glyphs are looked for on a max-pooled copy of this size: pooling keeps a thin white stroke
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


def glyph_share(gray: np.ndarray) -> float:
    """The share of the image covered by small near-white glyphs along its edges: bright structures narrower
    than a 3% window (a white top-hat), at least 60 levels above their surroundings, each smaller than an
    eighth of the image and centred in its outer fifth. Lead markers and printed labels are; anatomy (larger,
    dimmer, central) and wires (long) are not."""
    from scipy import ndimage

    f = max(1, int(np.ceil(max(gray.shape) / GLYPH_SIDE)))
    h, w = gray.shape[0] // f * f, gray.shape[1] // f * f
    small = gray[:h, :w].reshape(h // f, f, w // f, f).max(axis=(1, 3)).astype(np.int16)
    h, w = small.shape
    bright = (ndimage.white_tophat(small, size=max(3, round(0.03 * max(h, w)))) >= 60) & (small >= 200)
    labels, _ = ndimage.label(bright)
    edge = np.ones((h, w), dtype=bool)
    edge[round(0.22 * h):h - round(0.22 * h), round(0.22 * w):w - round(0.22 * w)] = False
    covered = 0
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        rows, cols = box
        if max(rows.stop - rows.start, cols.stop - cols.start) > 0.12 * max(h, w):
            continue  # a wire, a rib's edge: long
        area = int((labels[box] == i).sum())
        if area >= 6 and edge[(rows.start + rows.stop) // 2, (cols.start + cols.stop) // 2]:
            covered += area
    return covered / (h * w)


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
    strokes, glyphs = marker_share(gray), glyph_share(gray)
    if strokes >= MARKER_WARN or glyphs >= GLYPH_WARN:
        what = ("burned-in text near the edges" if strokes >= MARKER_WARN else
                "a side marker or label burned in near the edges")
        found.append(Finding("marker", "warn", round(max(strokes, glyphs), 4), what))
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


def measured_effect(finding: Finding, stress: StressRecord | None, trained_size: int = 224) -> str:
    """"a 20% border changed 70% of this model's test answers (34 images)": the stress result nearest to
    what was found, from this model's metrics/stress.json; "" when the model has none for it."""
    if not stress or finding.check not in STRESS_OF:
        return ""
    wanted = stress_strength(finding, trained_size)
    options = [(abs(float(strength) - wanted), name, strength, stats)
               for name in stress_names(finding)
               for strength, stats in stress.transforms.get(name, {}).items()]
    if not options:
        return ""
    _, name, strength, stats = min(options, key=lambda o: (o[0], o[1]))
    what = {"frame_median": f"a {float(strength):.0%} uniform border", "frame_black": f"a {float(strength):.0%} black "
            "border", "annotation": "a burned-in marker", "downscale": f"{float(strength):.0%} less resolution"}[name]
    towards = stress.screening_class or max(stats["flip_to"], key=lambda c: stats["flip_to"][c] or 0)
    to_share = stats["flip_to"].get(towards)
    extra = f", turning {to_share:.0%} of the others into {towards}" if to_share else ""
    return (f"in this model's stress tests {what} changed {stats['flip_rate']:.0%} of its answers on "
            f"{stress.images} test images{extra}")
