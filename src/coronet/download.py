"""Fetching the source archives: streamed, retried, resumed, verified, then renamed into place."""

from __future__ import annotations

import os
import time
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import requests
from tqdm import tqdm

from coronet.files import sha256_file

CHUNK = 1 << 20
# Small network reads: bytes received before a connection drops are kept for the resume.
NET_CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """The archive could not be fetched; the message names the URL and what to do instead."""


class ChecksumError(DownloadError):
    """The fetched bytes differ from the pinned sha256; nothing was kept."""


class UnsafeArchiveError(ValueError):
    """An archive entry would land outside its folder, or the archive would unpack too large."""


@dataclass(frozen=True)
class Fetched:
    url: str
    path: Path
    size: int
    sha256: str

    def record(self) -> dict[str, object]:
        return {"url": self.url, "file": self.path.name, "size": self.size, "sha256": self.sha256}


def resolve_url(url: str, filename: str, mirror: str = "") -> str:
    """The upstream URL, or ``<mirror>/<filename>`` when a mirror base URL is set."""
    if not mirror:
        return url
    return mirror.rstrip("/") + "/" + urllib.parse.quote(filename)


def alternatives_hint() -> str:
    return (
        "Alternatives: point download.mirror at a reachable copy (http(s):// or file:// base URL holding "
        "the archive under its filename), or run offline on generated data with download.source=synthetic."
    )


def fetch(
    url: str,
    dest: Path,
    *,
    sha256: str = "",
    partial_dir: Path,
    retries: int = 5,
    timeout_s: float = 60,
    backoff_s: float = 1.0,
) -> Fetched:
    """Downloads ``url`` to ``dest``.

    Bytes go to ``partial_dir/<name>.part`` first; a dropped connection resumes from where it stopped
    (HTTP Range), connection errors and 5xx answers are retried with exponential backoff, and the file
    is renamed onto ``dest`` only once complete and, when ``sha256`` is pinned, verified.
    """
    dest = Path(dest)
    partial_dir.mkdir(parents=True, exist_ok=True)
    part = partial_dir / f"{dest.name}.part"
    if urllib.parse.urlparse(url).scheme == "file":
        _copy_file_url(url, part)
    else:
        _download_http(url, part, retries=retries, timeout_s=timeout_s, backoff_s=backoff_s)
    digest = sha256_file(part)
    if sha256 and digest != sha256.lower():
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"sha256 mismatch for {url}: expected {sha256.lower()}, got {digest}. The download was deleted. "
            "If the source really changed, verify it and update the pinned sha256 in params.yaml."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    size = part.stat().st_size
    os.replace(part, dest)
    return Fetched(url=url, path=dest, size=size, sha256=digest)


def _copy_file_url(url: str, part: Path) -> None:
    source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if not source.is_file():
        raise DownloadError(f"could not read {url}: no such file. {alternatives_hint()}")
    with source.open("rb") as src, part.open("wb") as out, _progress(source.stat().st_size, part) as bar:
        while block := src.read(CHUNK):
            out.write(block)
            bar.update(len(block))


def _progress(total: int | None, part: Path, initial: int = 0) -> tqdm:
    name = part.name.removesuffix(".part")
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name)


def _download_http(url: str, part: Path, *, retries: int, timeout_s: float, backoff_s: float) -> None:
    last_error = "no attempt made"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with requests.get(url, stream=True, timeout=timeout_s, headers=headers) as response:
                if response.status_code == 416:  # what we hold is not a prefix the server knows: restart
                    part.unlink(missing_ok=True)
                    last_error = "HTTP 416 on resume"
                    continue
                if response.status_code >= 500:
                    last_error = f"HTTP {response.status_code} {response.reason}"
                    continue
                if response.status_code >= 400:
                    raise DownloadError(
                        f"could not download {url}: HTTP {response.status_code} {response.reason}. "
                        f"{alternatives_hint()}"
                    )
                resumed = response.status_code == 206
                if not resumed:
                    have = 0  # the server ignored Range: start over
                length = response.headers.get("Content-Length")
                total = have + int(length) if length is not None else None
                with part.open("ab" if resumed else "wb") as out, _progress(total, part, have) as bar:
                    for block in response.iter_content(NET_CHUNK):
                        out.write(block)
                        bar.update(len(block))
                if total is not None and part.stat().st_size != total:
                    last_error = f"connection closed after {part.stat().st_size} of {total} bytes"
                    continue
                return
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
    part.unlink(missing_ok=True)
    raise DownloadError(f"could not download {url} after {retries + 1} attempts ({last_error}). {alternatives_hint()}")


def check_archive(path: Path, max_bytes: int) -> int:
    """Refuses a zip whose entries would escape their folder (zip-slip), that would unpack larger than
    ``max_bytes``, or whose data fails its CRC. Returns the number of entries."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            for info in infos:
                if not is_safe_member(info.filename):
                    raise UnsafeArchiveError(f"{path.name}: entry {info.filename!r} would escape its folder")
            total = sum(info.file_size for info in infos)
            if total > max_bytes:
                raise UnsafeArchiveError(f"{path.name}: entries unpack to {total} bytes, over the {max_bytes} limit")
            bad = archive.testzip()
            if bad is not None:
                raise UnsafeArchiveError(f"{path.name}: entry {bad!r} is corrupt (CRC mismatch)")
            return len(infos)
    except zipfile.BadZipFile as exc:
        raise UnsafeArchiveError(f"{path.name} is not a readable zip archive (truncated?): {exc}") from exc


def is_safe_member(name: str) -> bool:
    """True when extracting ``name`` under a folder stays inside that folder."""
    if not name or "\x00" in name or "\\" in name:
        return False
    pure = PurePosixPath(name)
    return not pure.is_absolute() and ".." not in pure.parts and ":" not in (pure.parts[0] if pure.parts else "")

