"""A team tracking server as MLflow's self-hosting guide lays it out: ``mlflow server`` with its runs,
metrics and registry in PostgreSQL and the artifacts behind its proxy (``--artifacts-destination``).

``make server`` starts one locally to try it: a PostgreSQL cluster made with ``initdb`` in
``.team-server/`` (a Unix socket there only its user can open, passwords required), then ``mlflow server`` on
127.0.0.1:5050; Ctrl-C, SIGTERM or SIGHUP stops both. Point runs at it with
``export MLFLOW_TRACKING_URI=http://127.0.0.1:5050``. The tests
start the same pair on free ports.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from coronet.console import port_is_free
from coronet.errors import UserError

DATABASE = "mlflow"
PG_USER = "postgres"  # the cluster's superuser; as root the server itself runs as this system user
PORT = 5050  # not MLflow's 5000, which `make ui` uses: both can run at once
# What every MLflow server we start runs with. MLflow 3's job runner (GenAI scorers and prompt optimisation, which
# this project never uses) starts six Huey consumers, each importing MLflow: measured here (2 cores), 10 processes
# and 30 s of CPU by 8 s after /health answers (in 11.4 s), against 2, 8 s and 8.3 s (benchmarks/server_start.py).
SERVER_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def pg_binary(name: str) -> str:
    """A PostgreSQL program: on PATH, or in Debian's versioned folder (/usr/lib/postgresql/<N>/bin)."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
                                       None)
    if not found:
        raise UserError(f"PostgreSQL's {name} is not installed: `apt-get install postgresql` (Debian/Ubuntu) or "
                        "your system's package, then try again")
    return found


def runuser() -> str:
    """util-linux's runuser (root switching to another account): in /usr/sbin, which a root shell's PATH may lack."""
    found = shutil.which("runuser") or next((p for p in ("/usr/sbin/runuser", "/sbin/runuser") if os.path.exists(p)),
                                            None)
    if not found:
        raise UserError("runuser (util-linux) is not installed: root needs it to run PostgreSQL as its own user")
    return found


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: then its programs run as the postgres system user."""
    return [runuser(), "-u", PG_USER, "--", *command] if os.geteuid() == 0 else command


class Postgres:
    """A cluster in ``folder`` (data and socket) that lets in its owner only: no TCP listener, a socket in a folder
    only its user can open (0700), and scram-sha-256 passwords even there. The superuser's password is made at
    ``initdb`` and kept in ``folder/pgpass`` (0600), which the client programs and mlflow read (PGPASSFILE)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        self.data, self.socket = self.folder / "pgdata", self.folder / "socket"
        self.log, self.passfile = self.folder / "postgres.log", self.folder / "pgpass"

    @property
    def uri(self) -> str:
        """The SQLAlchemy URI MLflow takes (psycopg 3, over the socket; the password from PGPASSFILE)."""
        return f"postgresql+psycopg://{PG_USER}@/{DATABASE}?host={self.socket}"

    @property
    def client_env(self) -> dict[str, str]:
        """What a client of this cluster needs in its environment (libpq reads the password file)."""
        return {"PGPASSFILE": str(self.passfile)}

    def start(self) -> Postgres:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.socket.mkdir(exist_ok=True)
        for private in (self.folder, self.socket):
            os.chmod(private, 0o700)
        if os.geteuid() == 0:
            shutil.chown(self.folder, PG_USER)
            shutil.chown(self.socket, PG_USER)
        if not (self.data / "PG_VERSION").is_file():
            self._initdb()
        self._refuse_open_or_running()
        self._run([pg_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o",
                   f"-c listen_addresses='' -c unix_socket_directories={self.socket} -c unix_socket_permissions=0700",
                   "start"], as_server=True)
        exists = self._run([pg_binary("psql"), "-h", str(self.socket), "-U", PG_USER, "-d", "postgres", "-tAc",
                            f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"  # noqa: S608 (a constant)
                            ]).stdout.strip()
        if exists != "1":
            self._run([pg_binary("createdb"), "-h", str(self.socket), "-U", PG_USER, DATABASE])
        return self

    def _initdb(self) -> None:
        password = secrets.token_urlsafe(24)
        with self._private(self.passfile) as out:
            out.write(f"*:*:*:{PG_USER}:{password}\n")
        pwfile = self.folder / ".initdb-password"
        with self._private(pwfile) as out:
            out.write(password + "\n")
        try:
            if os.geteuid() == 0:
                shutil.chown(pwfile, PG_USER)  # initdb runs as postgres and reads it
            self._run([pg_binary("initdb"), "-D", str(self.data), "-U", PG_USER, "--auth-local=scram-sha-256",
                       "--auth-host=reject", f"--pwfile={pwfile}", "-E", "UTF8"], as_server=True)
        finally:
            pwfile.unlink(missing_ok=True)

    @staticmethod
    def _private(path: Path) -> Any:
        return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w")

    def _refuse_open_or_running(self) -> None:
        """An older ``make server`` made clusters with trust authentication; one still running (a second ``make
        server``, or the first killed with kill -9) holds the data folder. Each is one line saying what to do."""
        hba = self.data / "pg_hba.conf"
        rules = [line.split() for line in hba.read_text().splitlines() if line.strip() and not line.startswith("#")]
        if any(rule[-1] == "trust" for rule in rules) or not self.passfile.is_file():
            raise UserError(f"the PostgreSQL cluster in {self.data} lets every local account in (made by an older "
                            f"`make server`, trust authentication): back up what you need (pg_dump), remove "
                            f"{self.folder} and start again")
        pid = _running_postmaster(self.data / "postmaster.pid")
        if pid is not None:
            stop = " ".join(_as_postgres(["pg_ctl", "-D", str(self.data), "stop"]))
            raise UserError(f"a PostgreSQL server (pid {pid}) already runs on {self.data}: another `make server`, or "
                            f"one that was killed; stop that one with Ctrl-C, or stop the database with `{stop}`")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").is_file():
            self._run([pg_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], check=False,
                      as_server=True)

    def _run(self, command: list[str], check: bool = True, as_server: bool = False
             ) -> subprocess.CompletedProcess[str]:
        """A PostgreSQL program: the server's own (initdb, pg_ctl) as the postgres user when we are root, the
        clients as this user with the password file."""
        program = Path(command[0]).name
        done = subprocess.run(_as_postgres(command) if as_server else command, capture_output=True, text=True,
                              cwd="/", env={**os.environ, **self.client_env})
        if check and done.returncode != 0:
            raise UserError(f"{program} failed: {(done.stderr or done.stdout).strip()[-500:]}")
        return done


def _running_postmaster(pid_file: Path) -> int | None:
    """The pid in a cluster's postmaster.pid when that process is alive."""
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def mlflow_server(backend: str, artifacts: Path, port: int, log: Path | None = None,
                  env: dict[str, str] | None = None) -> subprocess.Popen:
    """``mlflow server`` on 127.0.0.1:``port`` with the artifact proxy, in its own process group."""
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", backend, "--artifacts-destination", artifacts.resolve().as_uri()]
    out = log.open("wb") if log else None
    return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True,
                            env={**os.environ, **SERVER_ENV, **(env or {})})


def stop_on_signals() -> None:
    """SIGTERM (kill, a service manager) and SIGHUP (the terminal closed) stop a server as Ctrl-C does,
    instead of leaving it running."""
    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=2):
            return True
    except OSError:
        return False


def serve_until_stopped(command: list[str], ready_url: str, banner: str, env: dict[str, str] | None = None,
                        timeout_s: float = 300) -> int:
    """Runs a server in its own process group, its start-up chatter (deprecation warnings, worker messages) in a
    log file; prints ``banner`` once ``ready_url`` answers, not before; Ctrl-C, SIGTERM and SIGHUP stop it."""
    fd, name = tempfile.mkstemp(prefix="coronet-server-", suffix=".log")
    log = Path(name)
    print(f"starting: {Path(command[0]).name} {' '.join(command[1:4])} ... (its messages: {log})", flush=True)
    with os.fdopen(fd, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, **SERVER_ENV, "PYTHONWARNINGS": "ignore",
                                        **(env or {})})
    stop_on_signals()
    try:
        deadline = time.monotonic() + timeout_s
        while not _answers(ready_url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:]
                raise UserError(f"the server did not start ({' '.join(tail)[-300:] or 'no message'}); all its "
                                f"messages are in {log}")
            time.sleep(0.5)
        print(f"{banner}  (Ctrl-C stops it)", flush=True)
        code = process.wait()
        if code != 0:
            raise UserError(f"the server stopped with exit code {code}; its messages are in {log}")
    except KeyboardInterrupt:
        pass
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    return 0


def main(folder: Path = Path(".team-server"), port: int = PORT) -> int:
    if not port_is_free(port):  # before PostgreSQL starts: nothing to clean up, and no other service mistaken for ours
        raise UserError(f"127.0.0.1:{port} is in use (another `make server` or MLflow UI?): stop it, or start this "
                        f"one on another port: make server PORT={port + 1}")
    stop_on_signals()
    database = Postgres(folder).start()
    try:
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers",
                   "1", "--backend-store-uri", database.uri, "--artifacts-destination",
                   (folder / "artifacts").resolve().as_uri()]
        return serve_until_stopped(command, f"http://127.0.0.1:{port}/health", (
            f"PostgreSQL in {database.data} (socket {database.socket}, this user only); MLflow on "
            f"http://127.0.0.1:{port}\n  export MLFLOW_TRACKING_URI=http://127.0.0.1:{port}   then dvc repro, "
            "dvc exp run, dvc queue start"), env=database.client_env)
    finally:
        database.stop()


if __name__ == "__main__":
    import argparse

    from coronet.console import port as port_number
    from coronet.errors import run_stage

    parser = argparse.ArgumentParser(description="a local team tracking server: PostgreSQL behind mlflow server")
    parser.add_argument("--port", type=port_number, default=PORT, help=f"MLflow's port on 127.0.0.1 (default {PORT})")
    chosen = parser.parse_args().port
    run_stage(lambda: main(port=chosen))
