"""The embedded synthetic source: archives in exactly the two upstream layouts, made offline.

Each class gets its own finding, drawn on a chest-like phantom, so a CNN has something real to learn:
covid = bilateral peripheral ground-glass blobs; bacterial = one dense lobar consolidation; viral =
a coarse bilateral reticular pattern; normal = clear lungs. The archives also carry the quirks the
real ones have (PNGs named .jpg, RGBA and palette images, CT and lateral rows, a missing file, a
corrupt file, an exact duplicate, macOS junk), so the merge stage meets them offline too.
Everything is a pure function of the seed.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

COVID_COMMIT = "6a4242344473ccb5ed0d2148d8c7bfb1691e4ed8"
COVID_ROOT = f"covid-chestxray-dataset-{COVID_COMMIT}"
# The newest upstream header, trailing empty column included.
COVID_HEADER = [
    "patientid", "offset", "sex", "age", "finding", "RT_PCR_positive", "survival", "intubated",
    "intubation_present", "went_icu", "in_icu", "needed_supplemental_O2", "extubated", "temperature",
    "pO2_saturation", "leukocyte_count", "neutrophil_count", "lymphocyte_count", "view", "modality", "date",
    "location", "folder", "filename", "doi", "url", "license", "clinical_notes", "other_notes", "",
]
ZIP_TIME = (2020, 1, 1, 0, 0, 0)
LICENCES = ["CC BY", "CC BY-NC-SA", "Apache 2.0", ""]


def draw_xray(rng: np.random.Generator, label: str, size: int) -> np.ndarray:
    """A chest-like 8-bit grayscale phantom with the class's finding."""
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
    finding = np.zeros_like(image)
    if label == "covid":
        for cx, cy, rx, ry in centres:
            for _ in range(rng.integers(2, 4)):
                side = np.sign(cx - 0.5)
                bx = cx + side * rng.uniform(0.2, 0.7) * rx
                by = cy + rng.uniform(0.0, 0.7) * ry
                sigma = rng.uniform(0.04, 0.06)
                finding += rng.uniform(45, 65) * np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * sigma**2))
    elif label == "pneumonia_bacterial":
        cx, cy, rx, ry = centres[rng.integers(0, 2)]
        bx, by = cx + rng.uniform(-0.3, 0.3) * rx, cy + rng.uniform(-0.2, 0.5) * ry
        finding += rng.uniform(85, 105) * (((xx - bx) / (0.7 * rx)) ** 2 + ((yy - by) / (0.35 * ry)) ** 2 < 1)
    elif label == "pneumonia_viral":
        freq = rng.uniform(9, 12)
        phase = rng.uniform(0, 1, size=2)
        mesh = (np.abs(np.sin(np.pi * (xx * freq + phase[0]))) < 0.35) | (
            np.abs(np.sin(np.pi * (yy * freq + phase[1]))) < 0.35
        )
        finding += rng.uniform(35, 45) * mesh
    image += finding * lungs
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


def _zip(path: Path, entries: Iterable[tuple[str, bytes]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)


def write_covid_archive(path: Path, seed: int, n_images: int, size: int) -> None:
    """A GitHub archive of the covid-chestxray-dataset: metadata.csv and images/."""
    rng = np.random.default_rng([seed, 1])
    rows: list[dict[str, str]] = []
    files: dict[str, bytes] = {}

    def add(patient: str, filename: str, data: bytes | None, **fields: str) -> None:
        row = dict.fromkeys(COVID_HEADER, "")
        row.update(patientid=patient, filename=filename, folder="images", modality="X-ray", view="PA")
        row.update(finding="Pneumonia/Viral/COVID-19", sex=str(rng.choice(["M", "F"])))
        row.update(age=str(int(rng.integers(25, 85))), license=str(rng.choice(LICENCES)), **fields)
        rows.append(row)
        if data is not None:
            files[filename] = data

    made, patient = 0, 100
    while made < n_images:
        patient += 1
        for day in range(min(int(rng.integers(1, 4)), n_images - made)):
            w, h = (int(size * rng.uniform(0.8, 1.3)) for _ in range(2))
            gray = draw_xray(rng, "covid", size)
            kind = made % 9
            if kind == 3:  # a PNG named .jpg, as 18 real files are
                name, data = f"covid-{patient}-day{day}.jpg", encode(gray, "PNG", "L", (w, h))
            elif kind == 5:
                name, data = f"covid-{patient}-day{day}.png", encode(gray, "PNG", "RGBA", (w, h))
            elif kind == 7:
                name, data = f"covid-{patient}-day{day}.png", encode(gray, "PNG", "P", (w, h))
            else:
                name, data = f"covid-{patient}-day{day}.jpeg", encode(gray, "JPEG", "RGB", (w, h))
            add(str(patient), name, data, view=str(rng.choice(["PA", "AP", "AP Supine"])), offset=str(day))
            made += 1
    # Rows the merge stage must turn down, each for its own reason.
    add("900", "sars-900.jpeg", encode(draw_xray(rng, "normal", size), "JPEG", "RGB"),
        finding="Pneumonia/Viral/SARS")
    add("901", "covid-901-lateral.jpeg", encode(draw_xray(rng, "covid", size), "JPEG", "RGB"), view="L")
    add("902", "covid-902-ct.jpeg", None, modality="CT", view="Axial", folder="volumes")
    add("903", "covid-903-missing.jpeg", None)
    add("904", "covid-904-corrupt.jpeg", b"")
    add("905", "covid-905-copy.jpeg", files[rows[0]["filename"]])  # the same bytes as the first image
    add("906", "bacterial-906.jpeg", encode(draw_xray(rng, "pneumonia_bacterial", size), "JPEG", "RGB"),
        finding="Pneumonia/Bacterial/Streptococcus")
    files["unreferenced-extra.png"] = encode(draw_xray(rng, "normal", size), "PNG")

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COVID_HEADER, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    entries = [(f"{COVID_ROOT}/", b""), (f"{COVID_ROOT}/README.md", b"# synthetic covid-chestxray-dataset\n")]
    entries.append((f"{COVID_ROOT}/metadata.csv", text.getvalue().encode()))
    entries += [(f"{COVID_ROOT}/images/{name}", data) for name, data in sorted(files.items())]
    _zip(path, entries)


def write_kermany_archive(path: Path, seed: int, n_per_class: int, size: int) -> None:
    """ChestXRay2017.zip: chest_xray/{train,test}/{NORMAL,PNEUMONIA} with Kermany's file names."""
    rng = np.random.default_rng([seed, 2])
    entries: dict[str, bytes] = {}

    def put(name: str, label: str) -> bytes:
        w, h = (int(size * rng.uniform(1.0, 1.4)) for _ in range(2))
        data = encode(draw_xray(rng, label, size), "JPEG", "L", (w, h))
        folder = "test" if rng.uniform() < 0.2 else "train"
        sub = "NORMAL" if label == "normal" else "PNEUMONIA"
        entries[f"chest_xray/{folder}/{sub}/{name}"] = data
        return data

    made = 0
    while made < n_per_class:
        number, prefix = int(rng.integers(1, 9000)), "NORMAL2-" if rng.uniform() < 0.3 else ""
        for shot in range(1, min(int(rng.integers(1, 3)), n_per_class - made) + 1):
            put(f"{prefix}IM-{number:04d}-{shot:04d}.jpeg", "normal")
            made += 1
    counters = {"bacteria": 0, "virus": 0}
    person = 0
    while min(counters.values()) < n_per_class:
        person += 1
        kinds = ["bacteria", "virus"] if person % 5 == 0 else [str(rng.choice(["bacteria", "virus"]))]
        for kind in kinds:
            for _ in range(int(rng.integers(1, 3))):
                if counters[kind] >= n_per_class:
                    break
                counters[kind] += 1
                label = "pneumonia_bacterial" if kind == "bacteria" else "pneumonia_viral"
                put(f"person{person}_{kind}_{counters[kind] + person}.jpeg", label)
    # The quirks of the real zip: macOS junk, an exact duplicate, a truncated JPEG, a stray file.
    first_name, first = next((n, d) for n, d in sorted(entries.items()) if "/NORMAL/" in n)
    entries["chest_xray/train/NORMAL/NORMAL2-IM-9999-0001.jpeg"] = first
    entries["chest_xray/train/PNEUMONIA/person9999_bacteria_1.jpeg"] = first[: len(first) // 3]
    entries["chest_xray/.DS_Store"] = b"\x00\x00\x00\x01Bud1"
    entries[f"__MACOSX/chest_xray/train/NORMAL/._{Path(first_name).name}"] = b"\x00\x05\x16\x07junk"
    entries["chest_xray/train/NORMAL/notes.txt"] = b"not an image\n"
    _zip(path, sorted(entries.items()))


def write_archives(covid_path: Path, kermany_path: Path, seed: int, images_per_class: int, size: int) -> None:
    write_covid_archive(covid_path, seed, images_per_class, size)
    write_kermany_archive(kermany_path, seed, images_per_class, size)
