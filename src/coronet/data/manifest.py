"""Choosing the images: per-class counts sampled across patients, the same-source controls, each file
decoded, checked and de-duplicated by bytes, by pixels and (grouped, not removed) by perceptual hash."""

from __future__ import annotations

import random
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from coronet.console import progress
from coronet.data.archives import ArchiveReader, copy_tar_members, is_tar
from coronet.data.duplicates import (
    PAIR_COLUMNS,
    connected_groups,
    group_names,
    near_duplicate_pairs,
    perceptual_hashes,
    pixel_digest,
)
from coronet.data.sources import SCORED_ONLY, Candidate, Rejection
from coronet.data.sources.base import patient_round_robin
from coronet.errors import DataError
from coronet.files import atomic_path, sha256_bytes
from coronet.imaging import checks
from coronet.imaging.decode import ImageDecodeError, decode_grayscale
from coronet.params import MergeParams

MANIFEST_COLUMNS = [
    "id", "label", "cohort", "source", "patient_id", "view", "age", "sex", "finding", "group", "sha256", "pixel_sha256",
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

    def keep_apart(self, control_role: str) -> None:
        """Keeps what is only scored apart from what is trained on: a same-source control or an external
        source's image sharing a patient or a near-duplicate group with an image of the pool is rejected (it
        would be scored on what the model has seen). With params merge.controls.role ``train`` the controls
        that have a class join the pool (cohort ``mixed``) and only those without one must stay apart."""
        if control_role == "train":
            for row in self.rows:
                if row["cohort"] == "control" and row["label"]:
                    row["cohort"] = "mixed"
        frame = pd.DataFrame(self.rows, columns=MANIFEST_COLUMNS)
        if frame.empty:
            return
        component = connected_groups(frame, ["patient_id", "near_duplicate_group"])
        scored_only = frame["cohort"].isin(SCORED_ONLY).to_numpy()
        trained = set(component[~scored_only])
        overlapping = scored_only & np.isin(component, list(trained))
        for row in [r for r, out in zip(self.rows, overlapping, strict=True) if out]:
            self.rows.remove(row)
            self.stats = [s for s in self.stats if s["id"] != row["id"]]
            what = "a control" if row["cohort"] == "control" else "an external source's image"
            self.rejected.append(Rejection(row["source"], "", row["original_path"], f"{row['cohort']}_overlap",
                                           f"same patient or near duplicate as images of the classes' pool "
                                           f"({row['patient_id']}): {what} must share nothing with them",
                                           row["label"]))

    def missing_classes(self, classes: list[str], external: set[str]) -> list[str]:
        """Each class with no usable image to train on, with its most common reasons among the sources trained
        on (``external``: the sources only scored; rejected.csv has the rest)."""
        have = {r["label"] for r in self.rows if r["cohort"] not in SCORED_ONLY}
        rejected = self.rejected_frame()
        rejected = rejected[~rejected["source"].isin(external)]
        messages = []
        for label in classes:
            if label in have:
                continue
            reasons = rejected.loc[rejected["label"] == label, "code"].value_counts().head(3)
            why = ", ".join(f"{n} {code}" for code, n in reasons.items()) or "no record of that class was found"
            messages.append(f"{label} ({why})")
        return messages


def extract_chosen(pool: list[Candidate], target: Path) -> list[Candidate]:
    """The candidates that live in tar parts (NIH's), copied into the zip ``target`` in one sequential pass per
    part, and re-pointed there (``<part>/<member>``): select and resize then read them as zip members. Only
    what was chosen is copied, so disk follows the choice, not the parts' size. ``target`` is always written
    (empty without tar parts), whole or not at all; a member a part turns out not to hold is an error."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for candidate in pool:
        if is_tar(candidate.archive):
            wanted[candidate.archive].add(candidate.original_path)
    with atomic_path(target, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w") as out:
        for part, members in sorted(wanted.items()):
            copied = copy_tar_members(Path(part), members, out, prefix=f"{Path(part).name}/")
            if missing := sorted(members - copied):
                raise DataError(f"{Path(part).name} does not hold {missing[0]} (and {len(missing) - 1} more) "
                                "that its file list names: rerun the download stage (dvc repro -f download)")
            print(f"{Path(part).name}: {len(copied)} chosen file(s) copied in one pass")
    return [replace(c, archive=str(target), original_path=f"{Path(c.archive).name}/{c.original_path}")
            if is_tar(c.archive) else c for c in pool]


def select(pool: list[Candidate], cfg: MergeParams) -> Selection:
    """Takes ``cfg.counts[label]`` decodable, unique images per class from the pool, and every usable
    same-source control, deterministically from ``cfg.seed``.

    Candidates are visited patient by patient; a file that does not decode, cannot be an X-ray (the input
    checks refuse it) or repeats an image already taken (the same bytes, or other bytes with the same
    decoded pixels) is rejected with its reason and the id it duplicates, and the next candidate is taken
    instead. The first copy visited is kept: the classes first, in params order, then the controls, then the
    external sources' images (a copy of an image trained on is turned down as a duplicate).
    """
    classes = cfg.classes
    if unknown := sorted({c.label for c in pool if c.label} - set(classes)):
        raise ValueError(f"candidates carry labels outside params classes: {unknown}")
    selection = Selection()
    seen_bytes: dict[str, str] = {}
    seen_pixels: dict[str, str] = {}
    groups = [(label, int(cfg.counts[label]), [c for c in pool if c.label == label and c.cohort == "pool"])
              for label in classes]
    for cohort in ("control", "external", "scored"):  # every usable one, after the classes: a copy of a pool image
        scored = [c for c in pool if c.cohort == cohort]  # is not
        groups.append((cohort, len(scored), scored))
    with ArchiveReader() as reader:
        for label, wanted, candidates in groups:
            rng = random.Random(f"{cfg.seed}:{label}")
            taken, by_source = 0, defaultdict(int)
            bar = progress(total=min(wanted, len(candidates)), desc=f"merge {label}", unit="img")
            for candidate in patient_round_robin(candidates, rng):
                if taken >= wanted:
                    break
                if by_source[candidate.source] >= cfg.source(candidate.source).counts.get(label, wanted):
                    continue  # this source gave the class what params merge.sources.<name>.counts allow

                def reject(code: str, reason: str, duplicate_of: str = "", c: Candidate = candidate) -> None:
                    selection.rejected.append(Rejection(c.source, "", c.original_path, code, reason, c.label,
                                                        duplicate_of))

                try:
                    data = reader.read(candidate.archive, candidate.original_path)
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
                if refused := checks.refusal(checks.inspect(gray)):
                    reject("not_an_xray", refused)
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
                by_source[candidate.source] += 1
                bar.update(1)
            bar.close()
            if taken < wanted and label in classes:
                selection.shortfall[label] = (wanted, taken)
    return selection
