"""A throwaway Virtfleet for benchmarks: its own Redis, SQLite database, lab and processes.

    with BenchEnv("events", fake_hosts=10, vms_per_host=50) as env:
        env.stack.start_web(); env.stack.start_listener()
        ...
        env.write_result({...})

Everything lives under var/bench/<name>/ and is stopped (by PID) on exit. Needs root (the lab).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.bootstrap import _start_redis, _stop, free_port  # noqa: E402  (reuse the tests' Redis starter)
from tests.e2e.stack import Stack, wait_for  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(values: list[float]) -> dict:
    """p50/p90/p95/p99/max/mean of durations in seconds, reported in milliseconds."""
    if not values:
        return {"count": 0}
    ms = [v * 1000 for v in values]
    return {
        "count": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def rss_mib(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


class BenchEnv:
    """Redis + database + (optional) lab + a Stack of Virtfleet processes, torn down on exit."""

    def __init__(self, name: str, *, real_hosts: int = 0, fake_hosts: int = 0, vms_per_host: int = 20,
                 port_base: int | None = None, register: bool = True):  # fmt: skip
        self.name = name
        self.dir = ROOT / "var" / "bench" / name
        self.real_hosts = real_hosts
        self.fake_hosts = fake_hosts
        self.vms_per_host = vms_per_host
        self.port_base = port_base or int(os.environ.get("VIRTFLEET_BENCH_PORT_BASE", "19600"))
        self.register = register
        self.lab_state = None
        self._redis = None
        self.started = time.time()

    # --- setup / teardown ---------------------------------------------------------------------------
    def __enter__(self) -> BenchEnv:
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in self.dir.glob("virtfleet.sqlite3*"):
            old.unlink()
        self._redis, redis_url = _start_redis(self.dir)
        env = {
            "VIRTFLEET_LOCAL": "1",
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "VIRTFLEET_VAR_DIR": str(self.dir),
            "VIRTFLEET_SQLITE_PATH": str(self.dir / "virtfleet.sqlite3"),
            "REDIS_URL": redis_url,
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        os.environ.update(env)
        os.environ.pop("DATABASE_URL", None)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        logs = self.dir / "logs"
        logs.mkdir(exist_ok=True)
        for old in logs.glob("*.log"):
            old.unlink()
        self.stack = Stack(env={**os.environ}, http_port=free_port(), console_port=free_port(), logs=logs)
        if self.real_hosts or self.fake_hosts:
            import lab

            lab_dir = self.dir / "lab"
            shared = ROOT / "var" / "lab" / "images"
            if self.real_hosts and not (lab_dir / "images").exists() and shared.exists():
                import shutil

                lab_dir.mkdir(parents=True, exist_ok=True)
                shutil.copytree(shared, lab_dir / "images")
            if lab.status(lab_dir) is not None:
                lab.down(lab_dir)
            started = time.monotonic()
            self.lab_state = lab.up(
                lab_dir, hosts=self.real_hosts, fake_hosts=self.fake_hosts, vms_per_host=self.vms_per_host,
                port_base=self.port_base,
            )  # fmt: skip
            self.lab_seconds = time.monotonic() - started
            if self.register:
                self.register_hosts()
        return self

    def __exit__(self, *exc) -> None:
        for name in list(getattr(self, "stack", Stack({}, 0, 0)).procs):
            self.stack.stop(name)
        if self.lab_state is not None:
            import lab

            lab.down(self.dir / "lab")
        if self._redis is not None:
            _stop(self._redis)

    # --- helpers ------------------------------------------------------------------------------------
    def register_hosts(self) -> list:
        """Register the lab's hosts (no sync: the listener resyncs what it takes)."""
        from hosts.services import host_ensure

        return [
            host_ensure(name=h.name, uri=h.uri, migration_address="127.0.0.1" if h.kind == "real" else "")[0]
            for h in self.lab_state.hosts
        ]

    def sync_all(self, workers: int = 8) -> float:
        from hosts.models import Host
        from hosts.services import host_sync

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda h: host_sync(host=h), Host.objects.all()))
        assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
        return time.monotonic() - started

    def session_cookie(self, username: str = "bench") -> str:
        """A signed-in session for ``username`` (created as superuser), as a Cookie header value."""
        from django.conf import settings
        from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
        from django.contrib.sessions.backends.db import SessionStore

        user, _ = get_user_model().objects.get_or_create(
            username=username, defaults={"is_superuser": True, "is_staff": True}
        )
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.save()
        return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"

    def wait_watched(self, listener_logs: list[str] | None = None, timeout: float = 120) -> float:
        """Wait until every registered host was resynced by a listener; returns the seconds it took."""
        from hosts.models import Host

        started = time.monotonic()
        total = Host.objects.count()
        wait_for(lambda: Host.objects.filter(last_sync__isnull=False, state="connected").count() == total, timeout,
                 interval=0.1, message=f"all {total} hosts to be watched and resynced")  # fmt: skip
        return time.monotonic() - started

    def machine(self) -> dict:
        return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}

    def write_result(self, data: dict) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        payload = {
            "benchmark": self.name,
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": self.machine(),
            **data,
        }
        path.write_text(json.dumps(payload, indent=2) + "\n")
        return path


def virsh(uri: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """virsh against ``uri``, quiet, its output captured (the baseline tool of several benches)."""
    return subprocess.run(["virsh", "-q", "-c", uri, *args], check=check, capture_output=True, text=True)


def api_session(name: str = "bench") -> requests.Session:
    """A session with a personal API token of a bench administrator."""
    from django.contrib.auth import get_user_model

    from accounts.services import token_create

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_superuser": True})
    _instance, token = token_create(user=user, name=name, expires_in_days=1)
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    return session
