"""Duplicates by what an image shows, not by its bytes.

Two checks, both on the decoded 8-bit grayscale image (the form resize starts from):
- identical pixels: a digest of the decoded array. Real collections hold the same X-ray uploaded twice
  with different bytes (other metadata, another encoder); merge keeps one copy and rejects the rest.
- near duplicates: re-encoded, rescaled, contrast-changed or slightly cropped copies. A 256-bit
  perceptual hash (imagehash's DCT pHash, hash_size 16) is computed on several centred crops of each
  image, and two images are near duplicates when their closest pair of crop hashes differs in at most
  ``max_distance`` bits. 64-bit hashes cannot separate chest X-rays (different films of different
  children were 4-10 bits apart on the real Kermany files); with 256 bits distinct films were >= 58
  bits apart, while re-encoded or rescaled copies were <= 6 and copies cropped by up to 7% per side
  <= 20 (measured on real-mini). Near duplicates are kept but grouped, so the split never separates them.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

HASH_SIZE = 16  # 16 x 16 = 256 bits
CROPS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.10)  # share cut from each side before hashing
HASH_INPUT_MAX = 512  # hash a downscaled copy: the pHash itself looks at 64 x 64 pixels
PAIR_COLUMNS = ["id_a", "id_b", "distance", "label_a", "label_b"]


def pixel_digest(gray: np.ndarray) -> str:
    """sha256 of the decoded pixels and their shape: equal for the same image in different files."""
    return hashlib.sha256(f"{gray.shape}".encode() + np.ascontiguousarray(gray).tobytes()).hexdigest()


def perceptual_hashes(gray: np.ndarray) -> np.ndarray:
    """Boolean array (len(CROPS), 256): the pHash of each centred crop of the image."""
    import imagehash

    image = Image.fromarray(gray)
    image.thumbnail((HASH_INPUT_MAX, HASH_INPUT_MAX), Image.Resampling.BILINEAR)
    w, h = image.size
    rows = []
    for share in CROPS:
        dx, dy = int(w * share), int(h * share)
        crop = image.crop((dx, dy, w - dx, h - dy))
        rows.append(imagehash.phash(crop, hash_size=HASH_SIZE).hash.ravel())
    return np.array(rows, dtype=bool)


def near_duplicate_pairs(ids: list[str], labels: list[str], hashes: list[np.ndarray], max_distance: int,
                         block: int = 256) -> pd.DataFrame:
    """Every pair of images whose closest crop hashes differ in at most ``max_distance`` bits.

    Hamming distances come from one matrix product of the hashes as +-1 vectors (bits that differ =
    (bits - dot) / 2), in blocks of images, so thousands of images take seconds and bounded memory.
    """
    rows: list[dict[str, object]] = []
    n = len(ids)
    if n > 1:
        crops, bits = hashes[0].shape
        signs = np.concatenate([np.where(h, 1.0, -1.0) for h in hashes]).astype(np.float32)  # (n*crops, bits)
        for start in range(0, n, block):
            stop = min(n, start + block)
            dots = signs[start * crops : stop * crops] @ signs.T
            closest = dots.reshape(stop - start, crops, n, crops).max(axis=(1, 3))
            distance = np.rint((bits - closest) / 2).astype(np.int32)
            for i, k in zip(*np.nonzero(distance <= max_distance), strict=True):
                a, b = start + int(i), int(k)
                if a < b:
                    a, b = sorted((a, b), key=lambda m: ids[m])
                    rows.append({"id_a": ids[a], "id_b": ids[b], "distance": int(distance[i, k]),
                                 "label_a": labels[a], "label_b": labels[b]})
    return pd.DataFrame(rows, columns=PAIR_COLUMNS).sort_values(["id_a", "id_b"], ignore_index=True)


def connected_groups(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Component number of each row when rows sharing a value in any of ``columns`` are connected.

    E.g. columns [patient_id, near_duplicate_group]: a patient's images and every near-duplicate of
    them end in one component, however the links chain.
    """
    n = len(frame)
    values: dict[tuple[str, str], int] = {}
    rows, nodes = [], []
    for column in columns:
        for row, value in enumerate(frame[column].astype(str)):
            if value:
                rows.append(row)
                nodes.append(n + values.setdefault((column, value), len(values)))
    size = n + len(values)
    graph = coo_matrix((np.ones(len(rows)), (rows, nodes)), shape=(size, size))
    _, component = connected_components(graph, directed=False)
    return component[:n]


def group_names(ids: list[str], pairs: pd.DataFrame) -> list[str]:
    """Each image's near-duplicate group, named by its smallest id (an image alone names itself)."""
    index = {image_id: i for i, image_id in enumerate(ids)}
    a, b = [index[i] for i in pairs["id_a"]], [index[i] for i in pairs["id_b"]]
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(ids), len(ids)))
    _, component = connected_components(graph, directed=False)
    first: dict[int, str] = {}
    for image_id, c in sorted(zip(ids, component, strict=True)):
        first.setdefault(int(c), image_id)
    return [first[int(c)] for c in component]
