"""Code tier: downloads against a real HTTP server on 127.0.0.1 (never the internet, never mocked)."""

from __future__ import annotations

import hashlib
import socket
import zipfile

import pytest

from coronet.data.archives import UnsafeArchiveError, check_archive, is_safe_member
from coronet.data.download import ChecksumError, DownloadError, fetch, resolve_url

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def get(server, tmp_path, name="/a.zip", **kwargs):
    kwargs.setdefault("backoff_s", 0.01)
    return fetch(server.url + name, tmp_path / "out" / "a.zip", cache_dir=tmp_path / "partial", **kwargs)


def test_dropped_connection_resumes_with_range(file_server, tmp_path):
    file_server.files["/a.zip"] = PAYLOAD
    file_server.drop["/a.zip"] = 300_000
    fetched = get(file_server, tmp_path, sha256=sha(PAYLOAD))
    assert fetched.path.read_bytes() == PAYLOAD
    (first, no_range), (second, resume) = file_server.requests
    assert first == second == "/a.zip" and no_range is None
    assert 0 < int(resume.removeprefix("bytes=").rstrip("-")) <= 300_000  # continued, not restarted
    assert not list((tmp_path / "partial").glob("*.part"))  # only the verified archive stays in the cache


def test_server_errors_are_retried(file_server, tmp_path):
    file_server.files["/a.zip"] = PAYLOAD
    file_server.fail["/a.zip"] = 2
    fetched = get(file_server, tmp_path, retries=3)
    assert fetched.sha256 == sha(PAYLOAD) and fetched.size == len(PAYLOAD)
    assert len(file_server.requests) == 3


def test_retries_run_out_with_a_clear_error(file_server, tmp_path):
    file_server.files["/a.zip"] = PAYLOAD
    file_server.fail["/a.zip"] = 10
    with pytest.raises(DownloadError, match=r"after 3 attempts \(HTTP 500"):
        get(file_server, tmp_path, retries=2)
    assert not (tmp_path / "out" / "a.zip").exists()


def test_checksum_mismatch_keeps_nothing(file_server, tmp_path):
    file_server.files["/a.zip"] = PAYLOAD
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        get(file_server, tmp_path, sha256=sha(b"something else"))
    assert not (tmp_path / "out" / "a.zip").exists()
    assert not list((tmp_path / "partial").glob("*.part"))  # only the verified archive stays in the cache


def test_missing_file_is_not_retried(file_server, tmp_path):
    with pytest.raises(DownloadError, match=r"HTTP 404.*download\.source=synthetic"):
        get(file_server, tmp_path, name="/nothing.zip")
    assert len(file_server.requests) == 1


def test_unreachable_host_names_url_and_alternatives(tmp_path):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/a.zip"
    with pytest.raises(DownloadError) as info:
        fetch(url, tmp_path / "a.zip", cache_dir=tmp_path / "p", retries=1, backoff_s=0.01, timeout_s=2)
    message = str(info.value)
    assert url in message and "download.mirror" in message and "synthetic" in message
    assert not (tmp_path / "a.zip").exists()


def test_file_url_and_mirror(tmp_path):
    source = tmp_path / "mirror" / "ChestXRay2017.zip"
    source.parent.mkdir()
    source.write_bytes(PAYLOAD)
    url = resolve_url("https://upstream.invalid/file_downloaded", "ChestXRay2017.zip", source.parent.as_uri())
    assert url == source.as_uri()
    fetched = fetch(url, tmp_path / "raw" / "k.zip", cache_dir=tmp_path / "p", sha256=sha(PAYLOAD))
    assert fetched.path.read_bytes() == PAYLOAD
    assert resolve_url("https://x/y", "f.zip", "") == "https://x/y"


def write_zip(path, entries):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(zipfile.ZipInfo(name), data)
    return path


def test_zip_slip_archive_is_refused(file_server, tmp_path):
    evil = write_zip(tmp_path / "evil.zip", {"chest_xray/ok.jpeg": b"x", "../../etc/evil.sh": b"boom"})
    file_server.files["/a.zip"] = evil.read_bytes()
    fetched = get(file_server, tmp_path)
    with pytest.raises(UnsafeArchiveError, match="escape"):
        check_archive(fetched.path, max_bytes=10**9)


@pytest.mark.parametrize("name", ["/etc/passwd", "a/../../b", "..", "C:/x", "a\\..\\b", ""])
def test_unsafe_member_names(name):
    assert not is_safe_member(name)


def test_archive_size_bound_and_truncation(tmp_path):
    ok = write_zip(tmp_path / "ok.zip", {"a/b.jpeg": b"x" * 1000})
    assert check_archive(ok, max_bytes=10_000) == 1
    with pytest.raises(UnsafeArchiveError, match="over the 100 limit"):
        check_archive(ok, max_bytes=100)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(ok.read_bytes()[:-30])
    with pytest.raises(UnsafeArchiveError, match="truncated"):
        check_archive(truncated, max_bytes=10_000)
