"""Atomic output: a stage that crashes leaves its previous outputs or none, never half a file."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from coronet.errors import UserError


def repository_root() -> Path:
    """The real repository, also under ``dvc exp run --temp`` (which runs in a copy and sets DVC_ROOT)."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def current_umask() -> int:
    """The process umask (Linux: read without changing it; elsewhere set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def share_like_open(path: Path, directory: bool = False) -> None:
    """Gives a file made by mkstemp/mkdtemp (0600/0700) the mode open()/mkdir() would have: 0644/0755
    under umask 022. Outputs are shared with colleagues and DVC caches; private modes surprise both."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yields a temporary path beside ``target``; renames it onto ``target`` only if the block succeeds.

    ``suffix`` lets writers that insist on an extension (Keras wants ``.keras``) keep it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        share_like_open(tmp_path)
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Like :func:`atomic_path` for a whole folder: the old folder is replaced only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        share_like_open(tmp, directory=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(target: str | Path, data: Any) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n", encoding="utf-8")


def write_csv(target: str | Path, frame: pd.DataFrame) -> None:
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def exclusive_lock(path: Path, what: str, timeout_s: float) -> Iterator[None]:
    """Holds an exclusive lock on ``path`` (fcntl, released by the kernel if this process dies) while the
    block runs. A process that finds it held says once who holds it (the holder writes its pid into the file)
    and waits up to ``timeout_s``; then, or when the file cannot be used as a lock, a UserError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"cannot use {path} as a lock for {what} ({exc.strerror}): remove it when no other "
                        "process of this project runs, or make its folder writable") from None
    with os.fdopen(fd, "r+") as lock:
        deadline, holder = time.monotonic() + timeout_s, ""
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not holder:
                    lock.seek(0)
                    holder = lock.read().strip() or "another process"
                    print(f"waiting for {holder}, which holds {path} ({what}; up to {timeout_s:.0f} s)",
                          file=sys.stderr, flush=True)
                if time.monotonic() > deadline:
                    raise UserError(f"{path} is still held by {holder} after {timeout_s:.0f} s ({what}): let it "
                                    "finish or stop it, then try again") from None
                time.sleep(0.2)
        lock.seek(0)
        lock.truncate()
        lock.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
