"""Choosing the images: per-class counts sampled across patients, each file decoded and deduplicated."""

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

from coronet.files import sha256_bytes
from coronet.images import ImageDecodeError, decode_grayscale
from coronet.sources import Candidate, Rejection

MANIFEST_COLUMNS = [
    "id", "label", "source", "patient_id", "view", "age", "sex", "sha256",
    "archive", "original_path", "licence", "width", "height",
]
REJECTED_COLUMNS = ["source", "row", "path", "code", "reason"]
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

    def manifest(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=MANIFEST_COLUMNS).sort_values("id", ignore_index=True)

    def stats_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.stats, columns=STATS_COLUMNS).sort_values("id", ignore_index=True)

    def rejected_frame(self) -> pd.DataFrame:
        return pd.DataFrame([r.__dict__ for r in self.rejected], columns=REJECTED_COLUMNS)


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

    Candidates are visited patient by patient; a file that does not decode or repeats an image
    already taken (same sha256) is rejected with its reason and the next candidate is taken instead.
    """
    unknown = sorted({c.label for c in pool} - set(classes))
    if unknown:
        raise ValueError(f"candidates carry labels outside params classes: {unknown}")
    selection = Selection()
    seen: dict[str, str] = {}
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
                data = read(candidate)
                digest = sha256_bytes(data)

                def reject(code: str, reason: str, c: Candidate = candidate) -> None:
                    selection.rejected.append(Rejection(c.source, "", c.original_path, code, reason))

                if digest in seen:
                    reject("duplicate", f"same content as {seen[digest]}")
                    continue
                try:
                    gray = decode_grayscale(data)
                except ImageDecodeError as exc:
                    reject("undecodable", str(exc))
                    continue
                image_id = f"{candidate.source}_{digest[:16]}"
                seen[digest] = image_id
                height, width = gray.shape
                selection.stats.append({"id": image_id, **image_statistics(gray, data)})
                selection.rows.append(
                    {**candidate.as_row(), "id": image_id, "sha256": digest, "width": width, "height": height}
                )
                taken += 1
                bar.update(1)
            bar.close()
            if taken < wanted:
                selection.shortfall[label] = (wanted, taken)
    return selection
