"""What MLflow 3's job runner costs every `mlflow server` this project starts (`make server`, `make ui`, the
suite's servers): a server on a fresh SQLite store with the runner (MLflow's default) against one without
(``SERVER_ENV``, what ours run with), alternating, best of --repeats. Measured per start: the seconds until
/health answers, then the processes and the CPU seconds of the server's whole process tree once it has settled.

Run: .venv/bin/python benchmarks/server_start.py [--repeats 3] [--settle 8]
The last line is ``CPU seconds of a start, without the job runner / with it: <ratio>``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

from coronet.tracking.team_server import SERVER_ENV

ARMS = {"with the job runner": {**SERVER_ENV, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"}, "without": SERVER_ENV}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_start(env: dict[str, str], settle: float) -> tuple[float, int, float]:
    """Seconds to /health, then the process count and CPU seconds of the tree ``settle`` seconds later."""
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers",
                   "1", "--backend-store-uri", f"sqlite:///{Path(folder) / 'mlflow.db'}"]
        started = time.monotonic()
        server = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                        break
                except OSError:
                    if server.poll() is not None:
                        raise SystemExit(f"mlflow server exited with {server.returncode}") from None
                    time.sleep(0.2)
            up = time.monotonic() - started
            time.sleep(settle)
            tree = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
            cpu = sum(sum(p.cpu_times()[:2]) for p in tree)
            return up, len(tree), cpu
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
            time.sleep(1)  # its workers and consumers gone before the next start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settle", type=float, default=8.0)
    args = parser.parse_args()
    best: dict[str, tuple[float, int, float]] = {}
    for _ in range(args.repeats):
        for arm, env in ARMS.items():
            up, processes, cpu = one_start(env, args.settle)
            print(f"{arm:<20} up in {up:5.1f} s, {processes:2d} processes, {cpu:5.1f} CPU s", flush=True)
            if arm not in best or cpu < best[arm][2]:
                best[arm] = (up, processes, cpu)
    (up_on, _, cpu_on), (up_off, _, cpu_off) = best["with the job runner"], best["without"]
    print(f"seconds to /health, without the job runner / with it: {up_off / up_on:.2f}")
    print(f"CPU seconds of a start, without the job runner / with it: {cpu_off / cpu_on:.2f}")


if __name__ == "__main__":
    main()
