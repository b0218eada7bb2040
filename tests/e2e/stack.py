"""Virtfleet's processes as tests and benchmarks run them: real daphne, Celery workers, listeners
and the console proxy as subprocesses, started and stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {message}")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# --- Virtfleet's processes ---------------------------------------------------------------------------
@dataclass
class Stack:
    env: dict
    http_port: int
    console_port: int
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, name: str, argv: list[str], *, env: dict | None = None) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # the processes of the Procfile, as the tests run them
    def start_web(self, name: str = "web", port: int | None = None) -> subprocess.Popen:
        port = port or self.http_port
        proc = self.start(
            name, [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "dashboard.asgi:application"]
        )
        wait_for(lambda: port_open(port) or proc.poll() is not None, 30, message=f"{name} to listen")
        assert proc.poll() is None, self.log(name)
        return proc

    def start_worker(self, name: str = "worker") -> subprocess.Popen:
        argv = [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "-Q", "lifecycle,migration,inventory,storage",
                "--pool", "threads", "--concurrency", "8", "--hostname", f"{name}@%h", "--loglevel", "INFO"]  # fmt: skip
        proc = self.start(name, argv)
        wait_for(lambda: "ready." in self.log(name) or proc.poll() is not None, 40, message=f"{name} to be ready")
        assert proc.poll() is None, self.log(name)
        return proc

    def start_listener(self, name: str = "listener", ttl: float = 6.0) -> subprocess.Popen:
        argv = [sys.executable, "manage.py", "listen", "--lease-ttl", str(ttl), "--tick", "0.5", "--name", name]
        return self.start(name, argv)

    def start_console(self, name: str = "console") -> subprocess.Popen:
        proc = self.start(name, [sys.executable, "manage.py", "console_proxy", "--port", str(self.console_port)])
        wait_for(lambda: port_open(self.console_port) or proc.poll() is not None, 20, message="console proxy")
        assert proc.poll() is None, self.log(name)
        return proc
