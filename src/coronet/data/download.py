"""Fetching the source archives: streamed, retried, resumed, verified, cached, then linked into place."""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import os
import shutil
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import urllib3
from tqdm import tqdm

from coronet.errors import UserError
from coronet.files import exclusive_lock, sha256_file, write_json

CHUNK = 1 << 20
# Small network reads: bytes received before a connection drops are kept for the resume.
NET_CHUNK = 1 << 16
PROGRESS_BYTES = 1 << 16  # a download that gets less than this in timeout_s seconds has stalled
RETRY_STATUS = {408, 429, 500, 502, 503, 504}
MAX_RETRY_AFTER_S = 300  # the longest Retry-After honoured; a server asking more is reported
# How long a download waits for another process fetching the same archive (a 4 GB NIH part on a slow line).
CLAIM_WAIT_S = 6 * 3600


class DownloadError(UserError):
    """The archive could not be fetched; the message names the URL and what to do instead."""


class ChecksumError(DownloadError):
    """The fetched bytes differ from the pinned sha256; nothing was kept."""


class _Retry(Exception):
    """This attempt failed in a way another attempt may not (the message says how); ``wait_s`` from Retry-After."""

    def __init__(self, message: str, wait_s: float | None = None) -> None:
        super().__init__(message)
        self.wait_s = wait_s


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


class DownloadCache:
    """``data/raw/.downloads/``: partial files (resumed by later runs) and verified complete archives.

    Not a DVC output, so it survives a failed or repeated stage: an archive fetched once is reused while
    its pinned sha256 (or, unpinned, the server's 304 Not Modified) says it is unchanged, and a failure
    of the second archive never costs the first. Entries are keyed by URL, so a partial file is only
    ever continued from the URL it came from.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def paths(self, url: str, name: str) -> tuple[Path, Path]:
        key = f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{name}"
        return self.directory / key, self.directory / f"{key}.part"

    def claim(self, url: str, name: str) -> contextlib.AbstractContextManager[None]:
        """The entry of ``url``, held by this process: experiments side by side (``dvc queue start -j 2``)
        share this cache, and a second one that wants the same archive waits for the first to finish it,
        then reuses it, instead of writing into the same partial file."""
        done, _ = self.paths(url, name)
        return exclusive_lock(done.with_name(done.name + ".lock"), f"downloading {url}", CLAIM_WAIT_S)

    @staticmethod
    def sidecar(path: Path) -> Path:
        return path.with_name(path.name + ".json")

    def verified(self, url: str, name: str, sha256: str, timeout_s: float) -> tuple[Path, str] | None:
        """(complete file, its sha256) for ``url`` when it may be reused: its bytes still match what was
        recorded and either the pinned sha256 or the server (a conditional request answered 304 Not
        Modified) says the remote file is the same."""
        done, _ = self.paths(url, name)
        try:
            record = json.loads(self.sidecar(done).read_text())
        except (OSError, ValueError):
            return None
        if record.get("url") != url or (sha256 and record.get("sha256") != sha256.lower()) or not done.is_file():
            return None
        if not sha256 and not _unchanged(url, record.get("validator", ""), timeout_s):
            return None
        digest = sha256_file(done)
        return (done, digest) if digest == record["sha256"] else None

    def discard(self, url: str, name: str) -> None:
        done, _ = self.paths(url, name)
        done.unlink(missing_ok=True)
        self.sidecar(done).unlink(missing_ok=True)

    def commit(self, url: str, part: Path, done: Path, digest: str) -> None:
        validator = ""
        with contextlib.suppress(OSError, ValueError):
            validator = json.loads(self.sidecar(part).read_text()).get("validator", "")
        os.replace(part, done)
        self.sidecar(part).unlink(missing_ok=True)
        write_json(self.sidecar(done), {"url": url, "sha256": digest, "size": done.stat().st_size,
                                        "validator": validator})


def _unchanged(url: str, validator: str, timeout_s: float) -> bool:
    """True when the server answers a conditional GET for ``url`` with 304 Not Modified."""
    if not validator:
        return False
    header = "If-Modified-Since" if validator[-3:] == "GMT" else "If-None-Match"
    try:
        with requests.get(url, headers={header: validator, "Accept-Encoding": "identity"}, stream=True,
                          timeout=timeout_s) as response:
            return response.status_code == 304
    except requests.RequestException:
        return False  # the download proper will retry and report


def fetch(
    url: str,
    dest: Path,
    *,
    sha256: str = "",
    cache_dir: Path,
    retries: int = 5,
    timeout_s: float = 60,
    backoff_s: float = 1.0,
) -> Fetched:
    """Downloads ``url`` to ``dest`` through the download cache.

    A verified earlier download of the same http(s) URL is reused (see :class:`DownloadCache`).
    Otherwise bytes go to a partial file that a dropped or stalled connection resumes (HTTP Range with
    If-Range, so only into the same remote file); connection errors, 408, 429 (honouring Retry-After)
    and 5xx answers are retried with exponential backoff; the partial file survives a failed run for the
    next one. Once complete and, when ``sha256`` is pinned, verified, the file is kept in the cache and
    linked (or copied) onto ``dest``.
    """
    dest = Path(dest)
    cache = DownloadCache(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with cache.claim(url, dest.name):
        done, digest = _fetch_into_cache(cache, url, dest.name, sha256, retries, timeout_s, backoff_s)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        try:
            os.link(done, dest)  # no second copy of a 1.2 GB archive
        except OSError:
            shutil.copyfile(done, dest)
    return Fetched(url=url, path=dest, size=dest.stat().st_size, sha256=digest)


def _fetch_into_cache(cache: DownloadCache, url: str, name: str, sha256: str, retries: int, timeout_s: float,
                      backoff_s: float) -> tuple[Path, str]:
    """The verified cache entry of ``url`` (reused, or fetched now) and its sha256; the caller holds its claim."""
    scheme = urllib.parse.urlparse(url).scheme
    # A local file:// copy is cheap and may change in place: it is copied afresh every time.
    found = cache.verified(url, name, sha256, timeout_s) if scheme != "file" else None
    if found is not None:
        print(f"{name}: reusing the verified download of {url} ({found[0]})")
        return found
    done, part = cache.paths(url, name)
    if scheme == "file":
        _copy_file_url(url, part)
    elif scheme in {"http", "https"}:
        _download_http(url, part, cache.sidecar(part), retries=retries, timeout_s=timeout_s, backoff_s=backoff_s)
    else:
        raise DownloadError(f"cannot download {url!r}: only http://, https:// and file:// URLs are supported. "
                            f"{alternatives_hint()}")
    digest = sha256_file(part)
    if sha256 and digest != sha256.lower():
        part.unlink(missing_ok=True)
        cache.sidecar(part).unlink(missing_ok=True)
        raise ChecksumError(
            f"sha256 mismatch for {url}: expected {sha256.lower()}, got {digest}. The download was deleted. "
            "If the source really changed, verify it and update the pinned sha256 in params.yaml."
        )
    cache.commit(url, part, done, digest)
    return done, digest


def _copy_file_url(url: str, part: Path) -> None:
    source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if not source.is_file():
        raise DownloadError(f"could not read {url}: no such file. {alternatives_hint()}")
    with source.open("rb") as src, part.open("wb") as out, _progress(source.stat().st_size, part) as bar:
        while block := src.read(CHUNK):
            out.write(block)
            bar.update(len(block))


def _progress(total: int | None, part: Path, initial: int = 0) -> tqdm:
    name = part.name.removesuffix(".part").split("-", 1)[-1]
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name)


def _retry_after(response: requests.Response) -> float | None:
    """Seconds a 408/429/503 answer asks us to wait (Retry-After as seconds or an HTTP date)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (email.utils.parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _download_http(url: str, part: Path, meta: Path, *, retries: int, timeout_s: float, backoff_s: float) -> None:
    last_error = "no attempt made"
    wait_s: float | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(wait_s if wait_s is not None else backoff_s * 2 ** (attempt - 1))
        try:
            _attempt(url, part, meta, timeout_s)
            return
        except _Retry as exc:
            last_error, wait_s = str(exc), exc.wait_s
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                urllib3.exceptions.HTTPError) as exc:
            last_error, wait_s = f"{type(exc).__name__}: {exc}", None
        except requests.RequestException as exc:  # a malformed URL and the like: retrying cannot help
            raise DownloadError(f"cannot download {url!r}: {exc}. {alternatives_hint()}") from exc
    raise DownloadError(f"could not download {url} after {retries + 1} attempts ({last_error}); the bytes received "
                        f"so far are kept in {part.parent} and the next run resumes. {alternatives_hint()}")


def _attempt(url: str, part: Path, meta: Path, timeout_s: float) -> None:
    """One request: resumes ``part`` when the server's validator says it is still the same file."""
    have = part.stat().st_size if part.exists() else 0
    validator = ""
    if have:
        try:
            validator = json.loads(meta.read_text()).get("validator", "")
        except (OSError, ValueError):
            validator = ""
        if not validator:  # nothing proves the remote file is unchanged: start over
            part.unlink()
            have = 0
    # identity: a compressed transfer cannot be resumed by byte ranges, nor checked against Content-Length
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers.update({"Range": f"bytes={have}-", "If-Range": validator})
    with requests.get(url, stream=True, timeout=timeout_s, headers=headers) as response:
        status = response.status_code
        if status == 416:  # what we hold is not a prefix the server knows: restart
            part.unlink(missing_ok=True)
            raise _Retry("HTTP 416 on resume")
        if status in RETRY_STATUS:
            wait = _retry_after(response)
            if wait is not None and wait > MAX_RETRY_AFTER_S:
                raise DownloadError(f"{url} answered HTTP {status} and asks to retry in {wait:.0f} s; try later. "
                                    f"{alternatives_hint()}")
            raise _Retry(f"HTTP {status} {response.reason}", wait)
        if status >= 400:
            raise DownloadError(f"could not download {url}: HTTP {status} {response.reason}. {alternatives_hint()}")
        encoded = response.headers.get("Content-Encoding", "identity").lower() not in {"identity", ""}
        resumed = status == 206 and not encoded and _range_start(response) == have
        if not resumed:
            have = 0  # the server sent the whole file (or another one): start over
        strong_etag = response.headers.get("ETag", "")
        validator = "" if strong_etag.startswith("W/") else strong_etag or response.headers.get("Last-Modified", "")
        write_json(meta, {"url": url, "validator": "" if encoded else validator})
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None and not encoded else None
        with part.open("ab" if resumed else "wb") as out, _progress(total, part, have) as bar:
            _stream(response, out, bar, timeout_s)
        if total is not None and part.stat().st_size != total:
            raise _Retry(f"connection closed after {part.stat().st_size} of {total} bytes")


def _range_start(response: requests.Response) -> int:
    """First byte of a 206 answer's Content-Range (``bytes 100-999/1000``), or -1."""
    try:
        return int(response.headers.get("Content-Range", "").split()[1].split("-")[0])
    except (IndexError, ValueError):
        return -1


def _stream(response: requests.Response, out: Any, bar: tqdm, timeout_s: float) -> None:
    """Copies the body to ``out`` as it arrives; a body that trickles (under PROGRESS_BYTES in timeout_s
    seconds) is a stall, retried like a dropped connection (the bytes so far are kept)."""
    mark_time, mark_bytes = time.monotonic(), 0
    while block := response.raw.read1(NET_CHUNK, decode_content=True):
        out.write(block)
        bar.update(len(block))
        mark_bytes += len(block)
        if mark_bytes >= PROGRESS_BYTES:
            mark_time, mark_bytes = time.monotonic(), 0
        elif time.monotonic() - mark_time > timeout_s:
            out.flush()
            raise _Retry(f"stalled: under {PROGRESS_BYTES} bytes in {timeout_s:g} s")
