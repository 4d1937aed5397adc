"""End to end: `make server`, the team's tracking server to try: PostgreSQL that lets its owner in only (a socket
only its user can open, no TCP listener, a password even for the owner), and both servers stopped on SIGTERM or
SIGHUP; a second one on the same cluster is one line. The server under load is tests/e2e/test_team_server.py."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import HAVE_POSTGRES, LOOPBACK, VENV_BIN, free_port, start_server, stop_server
from coronet.tracking import team_server

pytestmark = [pytest.mark.cost(60),
              pytest.mark.skipif(not HAVE_POSTGRES, reason="PostgreSQL (Debian's postgresql) is not installed")]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm", "sighup"])
def test_make_server_lets_its_owner_in_only_and_stops_both_servers_on_a_signal(tmp_path, stop):
    """SIGTERM (`kill PID`) and SIGHUP (the terminal closed) used to leave `mlflow server` and PostgreSQL
    running, and the cluster let every local account in as superuser (trust authentication, a socket anyone
    could open). A second `make server` on the same cluster is one line. The cluster lives outside pytest's
    folders: PostgreSQL runs as its own user, who cannot enter those."""
    folder = Path(tempfile.mkdtemp(prefix="coronet-team-"))
    port, log = free_port(), tmp_path / "server.log"
    script = f"from pathlib import Path; from coronet.tracking.team_server import main; main(Path({str(folder)!r}), {port})"
    process = start_server([str(VENV_BIN / "python"), "-c", script], f"http://127.0.0.1:{port}/health", log,
                           timeout=180)
    socket_dir = folder / "socket"
    psql = [team_server.pg_binary("psql"), "-h", str(socket_dir), "-U", "postgres", "-d", "mlflow", "-tAc", "SELECT 1"]
    try:
        assert (folder / "pgdata" / "postmaster.pid").is_file()
        assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700 and stat.S_IMODE((folder / "pgpass").stat().st_mode) == 0o600
        hba = (folder / "pgdata" / "pg_hba.conf").read_text()
        assert not [line for line in hba.splitlines() if line.split()[-1:] == ["trust"]]
        # No TCP listener: nothing but mlflow's port on this machine belongs to the cluster.
        settings = subprocess.run([*psql[:-1], "SHOW listen_addresses"], capture_output=True, text=True,
                                  env={**os.environ, "PGPASSFILE": str(folder / "pgpass")})
        assert settings.returncode == 0 and settings.stdout.strip() == "", settings.stderr
        # The owner without the password file is refused too (scram-sha-256 on the socket, not peer trust).
        bare = subprocess.run(psql, capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                                          if not k.startswith("PG")})
        assert bare.returncode != 0 and "password" in bare.stderr, bare.stderr
        if os.geteuid() == 0:  # another local account (CI runs as root, so it can switch to one)
            other = subprocess.run([team_server.runuser(), "-u", "nobody", "--", *psql], capture_output=True, text=True,
                                   cwd="/")
            assert other.returncode != 0 and "Permission denied" in other.stderr, other.stderr
        second = subprocess.run([str(VENV_BIN / "python"), "-c", "from pathlib import Path; from coronet.errors import "
                                 "run_stage; from coronet.tracking.team_server import main; "
                                 f"run_stage(lambda: main(Path({str(folder)!r}), {free_port()}))"],
                                capture_output=True, text=True)
        assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr
        assert [line for line in second.stderr.splitlines() if line.startswith("error: ")] == [
            line for line in second.stderr.splitlines() if "already runs" in line], second.stderr
        process.send_signal(stop)  # to the one process, as `kill PID` or a closing terminal does
        assert process.wait(timeout=60) == 0, log.read_text()[-2000:]
        assert not (folder / "pgdata" / "postmaster.pid").exists()  # PostgreSQL stopped
        with pytest.raises(OSError):
            LOOPBACK.open(f"http://127.0.0.1:{port}/health", timeout=2)  # mlflow server stopped
    finally:
        stop_server(process)
        shutil.rmtree(folder, ignore_errors=True)
