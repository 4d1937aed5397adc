"""Choosing the images: per-class counts sampled across patients, each file decoded and de-duplicated
by bytes, by pixels and (grouped, not removed) by perceptual hash."""

from __future__ import annotations

import random
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm import tqdm

from coronet.duplicates import PAIR_COLUMNS, group_names, near_duplicate_pairs, perceptual_hashes, pixel_digest
from coronet.files import sha256_bytes
from coronet.images import ImageDecodeError, decode_grayscale
from coronet.sources import Candidate, Rejection

MANIFEST_COLUMNS = [
    "id", "label", "source", "patient_id", "view", "age", "sex", "sha256", "pixel_sha256",
    "near_duplicate_group", "archive", "original_path", "licence", "width", "height",
]
REJECTED_COLUMNS = ["source", "row", "path", "label", "code", "reason", "duplicate_of"]
HISTOGRAM_BINS = 16
STATS_COLUMNS = ["id", "width", "height", "file_bytes", "mean", "std",
                 *[f"hist_{i:02d}" for i in range(HISTOGRAM_BINS)]]


def image_statistics(gray: np.ndarray, data: bytes) -> dict[str, float]:
    """Plain statistics of an original file: size, bytes, intensity mean, spread and histogram.
    None of them says anything about the lungs; if they predict the source, a shortcut exists."""
    hist = np.bincount(gray.ravel() // (256 // HISTOGRAM_BINS), minlength=HISTOGRAM_BINS) / gray.size
    return {"width": gray.shape[1], "height": gray.shape[0], "file_bytes": len(data), "mean": float(gray.mean()),
            "std": float(gray.std()), **{f"hist_{i:02d}": float(v) for i, v in enumerate(hist)}}


@dataclass
class Selection:
    rows: list[dict[str, object]] = field(default_factory=list)
    stats: list[dict[str, object]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    shortfall: dict[str, tuple[int, int]] = field(default_factory=dict)  # label -> (wanted, got)
    hashes: dict[str, np.ndarray] = field(default_factory=dict)  # id -> perceptual hashes
    near_duplicates: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PAIR_COLUMNS))

    def manifest(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=MANIFEST_COLUMNS).sort_values("id", ignore_index=True)

    def stats_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.stats, columns=STATS_COLUMNS).sort_values("id", ignore_index=True)

    def rejected_frame(self) -> pd.DataFrame:
        return pd.DataFrame([r.__dict__ for r in self.rejected], columns=REJECTED_COLUMNS)

    def group_near_duplicates(self, max_distance: int) -> None:
        """Finds near-duplicate pairs among the chosen images and names each image's group."""
        ids = sorted(self.hashes)
        labels = {r["id"]: r["label"] for r in self.rows}
        self.near_duplicates = near_duplicate_pairs(ids, [labels[i] for i in ids], [self.hashes[i] for i in ids],
                                                    max_distance)
        groups = dict(zip(ids, group_names(ids, self.near_duplicates), strict=True))
        for row in self.rows:
            row["near_duplicate_group"] = groups[row["id"]]

    def missing_classes(self, classes: list[str]) -> list[str]:
        """Each class with no usable image, with its most common reasons (rejected.csv has the rest)."""
        have = {r["label"] for r in self.rows}
        rejected = self.rejected_frame()
        messages = []
        for label in classes:
            if label in have:
                continue
            reasons = rejected.loc[rejected["label"] == label, "code"].value_counts().head(3)
            why = ", ".join(f"{n} {code}" for code, n in reasons.items()) or "no record of that class was found"
            messages.append(f"{label} ({why})")
        return messages


def patient_round_robin(pool: list[Candidate], rng: random.Random) -> Iterator[Candidate]:
    """Shuffled patients, one image from each in turn: a count spreads over as many patients as it can."""
    by_patient: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in sorted(pool, key=lambda c: (c.patient_id, c.original_path)):
        by_patient[candidate.patient_id].append(candidate)
    patients = sorted(by_patient)
    rng.shuffle(patients)
    queues = [by_patient[p] for p in patients]
    for queue in queues:
        rng.shuffle(queue)
    depth = 0
    while any(depth < len(q) for q in queues):
        for queue in queues:
            if depth < len(queue):
                yield queue[depth]
        depth += 1


def select(pool: list[Candidate], counts: dict[str, int], classes: list[str], seed: int) -> Selection:
    """Takes ``counts[label]`` decodable, unique images per class, deterministically from ``seed``.

    Candidates are visited patient by patient; a file that does not decode, or repeats an image already
    taken (the same bytes, or other bytes with the same decoded pixels), is rejected with its reason and
    the id it duplicates, and the next candidate is taken instead. The first copy visited is kept.
    """
    unknown = sorted({c.label for c in pool} - set(classes))
    if unknown:
        raise ValueError(f"candidates carry labels outside params classes: {unknown}")
    selection = Selection()
    seen_bytes: dict[str, str] = {}
    seen_pixels: dict[str, str] = {}
    with ExitStack() as stack:
        archives: dict[str, zipfile.ZipFile] = {}

        def read(c: Candidate) -> bytes:
            if c.archive not in archives:
                archives[c.archive] = stack.enter_context(zipfile.ZipFile(c.archive))
            return archives[c.archive].read(c.original_path)

        for label in classes:
            wanted = int(counts[label])
            pool_of_class = [c for c in pool if c.label == label]
            rng = random.Random(f"{seed}:{label}")
            taken = 0
            bar = tqdm(total=min(wanted, len(pool_of_class)), desc=f"merge {label}", unit="img")
            for candidate in patient_round_robin(pool_of_class, rng):
                if taken >= wanted:
                    break

                def reject(code: str, reason: str, duplicate_of: str = "", c: Candidate = candidate) -> None:
                    selection.rejected.append(Rejection(c.source, "", c.original_path, code, reason, c.label,
                                                        duplicate_of))

                try:
                    data = read(candidate)
                except (OSError, zipfile.BadZipFile, EOFError) as exc:  # a damaged member (CRC, truncated)
                    reject("unreadable", f"cannot read the archive member: {exc}")
                    continue
                digest = sha256_bytes(data)
                if digest in seen_bytes:
                    reject("duplicate", f"same bytes as {seen_bytes[digest]}", seen_bytes[digest])
                    continue
                try:
                    gray = decode_grayscale(data)
                except ImageDecodeError as exc:
                    reject("undecodable", str(exc))
                    continue
                pixels = pixel_digest(gray)
                if pixels in seen_pixels:
                    seen_bytes[digest] = seen_pixels[pixels]
                    reject("duplicate_pixels", f"other bytes, identical pixels to {seen_pixels[pixels]}",
                           seen_pixels[pixels])
                    continue
                image_id = f"{candidate.source}_{digest[:16]}"
                seen_bytes[digest] = seen_pixels[pixels] = image_id
                height, width = gray.shape
                selection.stats.append({"id": image_id, **image_statistics(gray, data)})
                selection.hashes[image_id] = perceptual_hashes(gray)
                selection.rows.append({**candidate.as_row(), "id": image_id, "sha256": digest, "pixel_sha256": pixels,
                                       "near_duplicate_group": image_id, "width": width, "height": height})
                taken += 1
                bar.update(1)
            bar.close()
            if taken < wanted:
                selection.shortfall[label] = (wanted, taken)
    return selection
