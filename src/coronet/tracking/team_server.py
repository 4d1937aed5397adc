"""A team tracking server as MLflow's self-hosting guide lays it out: ``mlflow server`` with its runs,
metrics and registry in PostgreSQL and the artifacts behind its proxy (``--artifacts-destination``).

``make server`` starts one locally to try it: a PostgreSQL cluster made with ``initdb`` in
``.team-server/`` (listening on a Unix socket there only), then ``mlflow server`` on 127.0.0.1:5000;
Ctrl-C stops both. Point runs at it with ``export MLFLOW_TRACKING_URI=http://127.0.0.1:5000``. The tests
start the same pair on free ports.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from coronet.errors import UserError

DATABASE = "mlflow"
PG_USER = "postgres"  # the cluster's superuser; as root the server itself runs as this system user


def pg_binary(name: str) -> str:
    """A PostgreSQL program: on PATH, or in Debian's versioned folder (/usr/lib/postgresql/<N>/bin)."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
                                       None)
    if not found:
        raise UserError(f"PostgreSQL's {name} is not installed: `apt-get install postgresql` (Debian/Ubuntu) or "
                        "your system's package, then try again")
    return found


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: then its programs run as the postgres system user."""
    return ["runuser", "-u", PG_USER, "--", *command] if os.geteuid() == 0 else command


class Postgres:
    """A throwaway cluster in ``folder`` (data and socket), reachable only through its Unix socket."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        self.data, self.socket = self.folder / "pgdata", self.folder / "socket"
        self.log = self.folder / "postgres.log"

    @property
    def uri(self) -> str:
        """The SQLAlchemy URI MLflow takes (psycopg 3, over the socket)."""
        return f"postgresql+psycopg://{PG_USER}@/{DATABASE}?host={self.socket}"

    def start(self) -> Postgres:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.socket.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, PG_USER)
            shutil.chown(self.socket, PG_USER)
        if not (self.data / "PG_VERSION").is_file():
            self._run([pg_binary("initdb"), "-D", str(self.data), "-U", PG_USER, "--auth=trust", "-E", "UTF8"])
        self._run([pg_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o",
                   f"-c listen_addresses='' -c unix_socket_directories={self.socket}", "start"])
        exists = self._run([pg_binary("psql"), "-h", str(self.socket), "-U", PG_USER, "-tAc",
                            f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"  # noqa: S608 (a constant)
                            ]).stdout.strip()
        if exists != "1":
            self._run([pg_binary("createdb"), "-h", str(self.socket), "-U", PG_USER, DATABASE])
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").is_file():
            self._run([pg_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], check=False)

    def _run(self, command: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(_as_postgres(command), capture_output=True, text=True, cwd="/")
        if check and done.returncode != 0:
            raise UserError(f"{Path(command[0]).name} failed: {(done.stderr or done.stdout).strip()[-500:]}")
        return done


def mlflow_server(backend: str, artifacts: Path, port: int, log: Path | None = None) -> subprocess.Popen:
    """``mlflow server`` on 127.0.0.1:``port`` with the artifact proxy, in its own process group."""
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", backend, "--artifacts-destination", artifacts.resolve().as_uri()]
    out = log.open("wb") if log else None
    return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True,
                            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})


def _interrupt(*_: object) -> None:
    """SIGTERM (kill, a service manager) stops both servers as Ctrl-C does, instead of leaving them running."""
    raise KeyboardInterrupt


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def main(folder: Path = Path(".team-server"), port: int = 5000) -> int:
    if not port_is_free(port):  # before PostgreSQL starts: nothing to clean up, and no other service mistaken for ours
        raise UserError(f"127.0.0.1:{port} is in use (another MLflow UI or server?): stop it, or start this one on "
                        "another port: make server PORT=5001")
    signal.signal(signal.SIGTERM, _interrupt)
    database = Postgres(folder).start()
    server = None
    try:
        server = mlflow_server(database.uri, folder / "artifacts", port)
        print(f"PostgreSQL in {database.data} (socket {database.socket}); MLflow on http://127.0.0.1:{port}\n"
              f"  export MLFLOW_TRACKING_URI=http://127.0.0.1:{port}   then dvc repro, dvc exp run, dvc queue start\n"
              "Ctrl-C stops both.", flush=True)
        code = server.wait()
        if code != 0:
            raise UserError(f"mlflow server stopped with exit code {code} (its messages are above)")
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        database.stop()
    return 0


if __name__ == "__main__":
    import argparse

    from coronet.errors import run_stage

    parser = argparse.ArgumentParser(description="a local team tracking server: PostgreSQL behind mlflow server")
    parser.add_argument("--port", type=int, default=5000, help="MLflow's port on 127.0.0.1 (default 5000)")
    port = parser.parse_args().port
    run_stage(lambda: main(port=port))
