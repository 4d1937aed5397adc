"""Archives: zips checked before use (zip-slip, size, CRC) and read member by member, each opened once; tar.gz
parts (NIH's) checked and listed in one sequential pass, and their chosen members copied out in one more pass
(a tar.gz cannot be read at random: never one pass per film, never a whole part unpacked)."""

from __future__ import annotations

import gzip
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from types import TracebackType

from coronet.errors import UserError


class UnsafeArchiveError(UserError):
    """An archive entry would land outside its folder, or the archive would unpack too large."""


def is_safe_member(name: str) -> bool:
    """True when extracting ``name`` under a folder stays inside that folder."""
    if not name or "\x00" in name or "\\" in name:
        return False
    pure = PurePosixPath(name)
    return not pure.is_absolute() and ".." not in pure.parts and ":" not in (pure.parts[0] if pure.parts else "")


TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
CHUNK = 1 << 20
# What a damaged gzip or tar stream raises while it is read (truncated, flipped bytes, not gzip at all).
BROKEN_STREAM = (EOFError, OSError, zlib.error, tarfile.TarError)


def is_tar(path: str | Path) -> bool:
    return str(path).endswith(TAR_SUFFIXES)


def check_archive(path: Path, max_bytes: int) -> int:
    """Refuses a zip whose entries would escape their folder (zip-slip), that would unpack larger than
    ``max_bytes``, or whose data fails its CRC; a tar.gz or a gzipped file likewise (:func:`list_tar`,
    :func:`check_gzip`). Returns the number of entries."""
    if is_tar(path):
        return len(list_tar(path, max_bytes)[0])
    if path.name.endswith(".gz"):
        return check_gzip(path, max_bytes)
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


def check_gzip(path: Path, max_bytes: int) -> int:
    """Reads a gzipped file (a label file) to its end: its CRC and length are checked there; refuses one that
    would unpack larger than ``max_bytes``. Returns 1 (one entry)."""
    total = 0
    try:
        with gzip.open(path) as stream:
            while block := stream.read(CHUNK):
                total += len(block)
                if total > max_bytes:
                    raise UnsafeArchiveError(f"{path.name}: unpacks to more than the {max_bytes} limit")
    except BROKEN_STREAM as exc:
        raise UnsafeArchiveError(f"{path.name} is not a complete gzip file (truncated or damaged): {exc}") from None
    return 1


def _tar_stream(path: Path) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """The members of a tar (gzipped or not) in one sequential pass, read to the end of the file: a gzip's CRC
    and length are checked only there, so a part cut short after its last film is found too."""
    opener = gzip.open if not path.name.endswith(".tar") else open
    with opener(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        for info in tar:
            yield tar, info
        while raw.read(CHUNK):
            pass


def list_tar(path: Path, max_bytes: int) -> tuple[list[str], list[str]]:
    """One sequential pass over a tar part: refuses an entry that would escape its folder, a link or device (a
    film is a regular file), more than ``max_bytes`` unpacked, or a truncated or damaged stream (one error naming
    the part). Returns its files' names (each once, in the part's order) and the names it holds more than once."""
    names: list[str] = []
    seen: set[str] = set()
    repeated: list[str] = []
    total = 0
    try:
        for _, info in _tar_stream(path):
            if not is_safe_member(info.name):
                raise UnsafeArchiveError(f"{path.name}: entry {info.name!r} would escape its folder")
            if info.isdir():
                continue
            if not info.isfile():
                raise UnsafeArchiveError(f"{path.name}: entry {info.name!r} is a link or device, not a file")
            total += info.size
            if total > max_bytes:
                raise UnsafeArchiveError(f"{path.name}: entries unpack to more than the {max_bytes} limit")
            if info.name in seen:
                repeated.append(info.name)
            else:
                seen.add(info.name)
                names.append(info.name)
    except BROKEN_STREAM as exc:
        raise UnsafeArchiveError(f"{path.name} is not a complete tar.gz part (truncated or damaged): {exc}; "
                                 "delete it from the download cache (data/raw/.downloads) and download it again"
                                 ) from None
    return names, repeated


def member_list(part: Path) -> Path:
    """Where the download stage keeps a tar part's file names (one a line), so merge need not read the part
    to know what it holds."""
    return part.with_name(part.name + ".members")


def copy_tar_members(path: Path, wanted: set[str], out: zipfile.ZipFile, prefix: str) -> set[str]:
    """Copies the ``wanted`` members of a tar part into the zip ``out`` as ``<prefix><name>`` in one sequential
    pass (the first copy of a name repeated in the part); returns the names copied. Only what is wanted is ever
    held, one member at a time."""
    copied: set[str] = set()
    try:
        for tar, info in _tar_stream(path):
            if info.isfile() and info.name in wanted and info.name not in copied:
                member = tar.extractfile(info)
                assert member is not None  # a regular file
                out.writestr(zipfile.ZipInfo(prefix + info.name, (2020, 1, 1, 0, 0, 0)), member.read())
                copied.add(info.name)
    except BROKEN_STREAM as exc:
        raise UnsafeArchiveError(f"{path.name} is not a complete tar.gz part (truncated or damaged): {exc}; "
                                 "rerun the download stage (dvc repro -f download) to fetch it again") from None
    return copied


class ArchiveReader:
    """Reads members of any number of zips, opening each once. Not shared between processes: each
    worker makes its own (one file offset for all would mix their reads)."""

    def __init__(self) -> None:
        self._open: dict[str, zipfile.ZipFile] = {}

    def read(self, archive: str | Path, member: str) -> bytes:
        key = str(archive)
        if key not in self._open:
            self._open[key] = zipfile.ZipFile(key)
        return self._open[key].read(member)

    def close(self) -> None:
        for archive in self._open.values():
            archive.close()
        self._open.clear()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def names(path: Path) -> list[str]:
    """Every file entry of the zip at ``path`` (folders left out)."""
    with zipfile.ZipFile(path) as archive:
        return [info.filename for info in archive.infolist() if not info.is_dir()]
