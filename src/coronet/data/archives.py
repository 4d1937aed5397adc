"""Zip archives: checked before use (zip-slip, size, CRC) and read member by member, each archive opened once."""

from __future__ import annotations

import zipfile
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
