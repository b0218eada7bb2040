"""Loaded by pytest before Django (``-p tests.bootstrap`` in pyproject.toml).

Django reads REDIS_URL and the database path when its settings are imported, so the real Redis
the tests use must exist before that: this starts a private redis-server on a free loopback port,
points the settings at it and at a scratch var/ directory, and stops it when pytest exits.

With VIRTFLEET_TEST_DB=postgres the tests run on PostgreSQL instead of SQLite (production's
database, as docs/deploy.md sets it up): a throwaway cluster (tests/postgres.py) on a free port.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed: run ./virtfleet setup (or apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the test redis-server did not start within 10 s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


SCRATCH = Path(tempfile.mkdtemp(prefix="virtfleet-test-"))
os.environ["VIRTFLEET_LOCAL"] = "1"
os.environ["VIRTFLEET_VAR_DIR"] = str(SCRATCH)
os.environ.setdefault("VIRTFLEET_SQLITE_PATH", str(SCRATCH / "virtfleet.sqlite3"))
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")
# Tests never touch a configured production database; the multi-machine test sets its own.
os.environ.pop("DATABASE_URL", None)
if os.environ.get("VIRTFLEET_TEST_DB") == "postgres":
    from tests.postgres import PostgresCluster

    _pg = PostgresCluster(port=free_port()).start()
    atexit.register(_pg.stop)
    _pg.psql(f"ALTER ROLE {_pg.user} CREATEDB")  # pytest-django creates and drops test_<name>
    os.environ["DATABASE_URL"] = _pg.url
if not os.environ.get("VIRTFLEET_TEST_REDIS_URL"):
    _redis, url = _start_redis(SCRATCH)
    os.environ["REDIS_URL"] = url
    atexit.register(_stop, _redis)
else:
    os.environ["REDIS_URL"] = os.environ["VIRTFLEET_TEST_REDIS_URL"]
atexit.register(shutil.rmtree, SCRATCH, True)
