"""Code tier: downloads against a real HTTP server on 127.0.0.1 (never the internet, never mocked)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import make_project, user_error, write_twins
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


def parts(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "partial").glob("*.part"))


def test_partial_download_survives_a_failed_run_and_resumes_with_if_range(file_server, tmp_path):
    file_server.files["/a.zip"] = PAYLOAD
    file_server.drop["/a.zip"] = 200_000
    with pytest.raises(DownloadError, match="the next run resumes"):
        get(file_server, tmp_path, retries=0)
    (part,) = parts(tmp_path)
    kept = part.stat().st_size
    assert 0 < kept <= 200_000
    fetched = get(file_server, tmp_path)
    assert fetched.path.read_bytes() == PAYLOAD
    assert file_server.requests[-1][1] == f"bytes={kept}-"  # continued where the failed run stopped
    assert file_server.if_range[-1] and file_server.if_range[-1].startswith('"')  # the ETag of the first answer
    assert not parts(tmp_path)


def test_partial_of_a_changed_remote_file_is_not_continued(file_server, tmp_path):
    file_server.files["/a.zip"] = PAYLOAD
    file_server.drop["/a.zip"] = 200_000
    with pytest.raises(DownloadError):
        get(file_server, tmp_path, retries=0)
    changed = PAYLOAD[::-1]
    file_server.files["/a.zip"] = changed  # new ETag: If-Range fails and the server sends the whole file
    assert get(file_server, tmp_path).path.read_bytes() == changed


def test_partial_without_a_validator_restarts(file_server, tmp_path):
    file_server.validators = False
    file_server.files["/a.zip"] = PAYLOAD
    file_server.drop["/a.zip"] = 200_000
    with pytest.raises(DownloadError):
        get(file_server, tmp_path, retries=0)
    assert get(file_server, tmp_path).path.read_bytes() == PAYLOAD
    assert file_server.requests[-1][1] is None  # nothing proved the file unchanged: no Range


def test_gzip_encoded_answers_are_decoded(file_server, tmp_path):
    file_server.files["/a.zip"] = PAYLOAD
    file_server.gzip.add("/a.zip")
    fetched = get(file_server, tmp_path, sha256=__import__("hashlib").sha256(PAYLOAD).hexdigest())
    assert fetched.path.read_bytes() == PAYLOAD


@pytest.mark.parametrize("status", [408, 429, 503])
def test_throttling_answers_are_retried_after_retry_after(file_server, tmp_path, status):
    file_server.files["/a.zip"] = PAYLOAD
    file_server.answers["/a.zip"] = [(status, {"Retry-After": "1"})]
    started = time.monotonic()
    assert get(file_server, tmp_path, backoff_s=0.01).path.read_bytes() == PAYLOAD
    assert time.monotonic() - started >= 0.9  # honoured the server's 1 s, not our 10 ms backoff


def test_retry_after_beyond_reason_is_reported(file_server, tmp_path):
    file_server.files["/a.zip"] = PAYLOAD
    file_server.answers["/a.zip"] = [(429, {"Retry-After": "86400"})]
    with pytest.raises(DownloadError, match="asks to retry in 86400 s; try later"):
        get(file_server, tmp_path)


def test_trickling_server_is_a_stall_and_the_download_resumes(file_server, tmp_path):
    file_server.files["/a.zip"] = PAYLOAD
    file_server.trickle["/a.zip"] = (500, 0.05, 60)  # 10 kB/s for 3 s: no progress worth the name
    started = time.monotonic()
    fetched = get(file_server, tmp_path, timeout_s=0.5)
    assert fetched.path.read_bytes() == PAYLOAD
    assert time.monotonic() - started < 3  # gave up on the trickle instead of waiting it out
    assert len(file_server.requests) == 2 and file_server.requests[1][1].startswith("bytes=")


def test_tampered_download_is_deleted_and_a_good_one_reused(file_server, tmp_path):
    file_server.files["/a.zip"] = PAYLOAD[:-4] + b"evil"
    with pytest.raises(ChecksumError):
        get(file_server, tmp_path, sha256=sha(PAYLOAD))
    assert not parts(tmp_path) and not (tmp_path / "out" / "a.zip").exists()
    file_server.files["/a.zip"] = PAYLOAD
    get(file_server, tmp_path, sha256=sha(PAYLOAD))
    before = len(file_server.requests)
    again = get(file_server, tmp_path, sha256=sha(PAYLOAD))
    assert again.path.read_bytes() == PAYLOAD and len(file_server.requests) == before  # pinned: no request at all
    file_server.files["/a.zip"] = PAYLOAD[::-1]  # unpinned, changed upstream: downloaded again
    assert get(file_server, tmp_path).path.read_bytes() == PAYLOAD[::-1]


def test_a_failing_second_archive_never_costs_the_first(file_server, tmp_path, stage):
    covid_zip, kermany_zip = tmp_path / "covid-chestxray-dataset.zip", tmp_path / "ChestXRay2017.zip"
    write_twins(tmp_path, seed=2, images_per_class=4, size=64)
    file_server.files["/m/covid-chestxray-dataset.zip"] = covid_zip.read_bytes()
    project = make_project(tmp_path / "repo", {"download.source": "upstream", "download.retries": 0,
                                               "download.mirror": f"{file_server.url}/m"})
    assert "HTTP 404" in user_error(stage(project, "download"))
    assert (project / "data/raw/archives/covid-chestxray-dataset.zip").read_bytes() == covid_zip.read_bytes()
    file_server.files["/m/ChestXRay2017.zip"] = kermany_zip.read_bytes()
    file_server.files["/m/Actualmed-COVID-chestxray-dataset.zip"] = (
        tmp_path / "Actualmed-COVID-chestxray-dataset.zip").read_bytes()
    assert stage(project, "download").returncode == 0
    # The COVID-19 archive came from the download cache, after the server said it had not changed.
    assert file_server.not_modified == ["/m/covid-chestxray-dataset.zip"]
    assert [p for p, _ in file_server.requests].count("/m/covid-chestxray-dataset.zip") == 2


def test_two_experiments_downloading_the_same_archive_at_once_both_succeed(file_server, tmp_path):
    """Two experiments side by side on a fresh checkout (`dvc queue start -j 2`): each runs its download stage in
    its own copy with DVC_ROOT the real repository, so both fetch into one download cache at the same time. The
    second waits for the first's claim and reuses its archive; before claims, it truncated the first's partial
    file and one of them died renaming it (FileNotFoundError)."""
    write_twins(tmp_path, seed=2, images_per_class=4, size=64)
    names = ("covid-chestxray-dataset.zip", "ChestXRay2017.zip", "Actualmed-COVID-chestxray-dataset.zip")
    for name in names:
        file_server.files[f"/m/{name}"] = (tmp_path / name).read_bytes()
    covid = file_server.files["/m/covid-chestxray-dataset.zip"]
    piece = len(covid) // 40 + 1
    file_server.trickle["/m/covid-chestxray-dataset.zip"] = (piece, 0.1, 40)  # the whole archive, in about 4 s
    root = make_project(tmp_path / "repo", {"download.source": "upstream", "download.mirror": f"{file_server.url}/m"})
    env = {**os.environ, "DVC_ROOT": str(root)}
    copies = [shutil.copytree(root, tmp_path / f"exp{k}") for k in (1, 2)]
    cache = root / "data/raw/.downloads"
    run = [sys.executable, "stages/download.py"]
    first = subprocess.Popen(run, cwd=copies[0], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(cache.glob("*covid-chestxray-dataset.zip.part")):  # the first is downloading it now
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    second = subprocess.run(run, cwd=copies[1], env=env, capture_output=True, text=True, timeout=120)
    err = first.communicate(timeout=120)[1]
    assert first.returncode == 0, err[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    assert "waiting for process" in second.stderr and "downloading" in second.stderr  # says whom it waits for
    for copy in copies:
        assert (copy / "data/raw/archives/covid-chestxray-dataset.zip").read_bytes() == covid
    # One download (trickled, so it has no Range); the second process asked only whether it had changed.
    asked = [p for p, rng in file_server.requests if p == "/m/covid-chestxray-dataset.zip" and rng is None]
    assert len(asked) == 2 and file_server.not_modified.count("/m/covid-chestxray-dataset.zip") == 1
    assert not list(cache.glob("*.part"))


def test_a_lock_that_is_a_folder_or_held_too_long_is_one_clear_error(tmp_path):
    from coronet.errors import UserError
    from coronet.files import exclusive_lock

    (tmp_path / "x.lock").mkdir()
    with pytest.raises(UserError, match=r"cannot use .*x\.lock as a lock for testing .*remove it"), \
            exclusive_lock(tmp_path / "x.lock", "testing", timeout_s=1):
        pass
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from coronet.files import exclusive_lock\n"
                               f"with exclusive_lock(Path({str(tmp_path / 'y.lock')!r}), 'holding', 60):\n"
                               "    print('held', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(UserError, match=rf"still held by process {holder.pid} on .* after 1 s"), \
                exclusive_lock(tmp_path / "y.lock", "testing", timeout_s=1):
            pass
        assert time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()
    with exclusive_lock(tmp_path / "y.lock", "testing", timeout_s=1):  # the kernel released a dead holder's lock
        pass
