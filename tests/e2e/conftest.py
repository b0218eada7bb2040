"""End-to-end fixtures: the real programs, started once per test session and stopped after.

- ``lab``: the local lab (lab/) — real libvirtd + QEMU hosts with tiny Linux guests.
- ``stack``: daphne (ASGI), a Celery worker, the listener and the console proxy, as subprocesses
  sharing the test database (a SQLite file) and the test Redis with this process.
- ``browser`` / ``page``: headless Debian Chromium driven by Playwright, signed in.

Nothing here skips: if a program is missing the fixture fails, saying what to install.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings

from tests.bootstrap import ROOT, free_port

pytestmark = pytest.mark.e2e

# Playwright's sync API keeps an asyncio loop running in the test thread; the ORM calls the tests
# make there are still plain synchronous calls (the documented way to combine the two).
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]  # fmt: skip
LAB_DIR = Path(os.environ.get("VIRTFLEET_TEST_LAB_DIR", ROOT / "var" / "lab-test"))
LAB_PORT_BASE = int(os.environ.get("VIRTFLEET_TEST_LAB_PORT_BASE", "17600"))


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


# --- the lab ------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def lab_state():
    import lab

    shared = ROOT / "var" / "lab" / "images"
    if not (LAB_DIR / "images").exists() and shared.exists():
        LAB_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copytree(shared, LAB_DIR / "images")  # reuse what ./virtfleet setup prepared
    try:
        state = lab.up(LAB_DIR, hosts=2, guests_per_host=2, port_base=LAB_PORT_BASE, ssh=True)
    except lab.LabAlreadyRunning:
        lab.down(LAB_DIR)
        state = lab.up(LAB_DIR, hosts=2, guests_per_host=2, port_base=LAB_PORT_BASE, ssh=True)
    yield state
    lab.down(LAB_DIR)
    assert lab.leftovers(state) == [], "the lab left processes behind"


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
        argv = [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "-Q", "lifecycle,migration,inventory",
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


@pytest.fixture(scope="session")
def stack_env(django_db_setup, tmp_path_factory):
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "VIRTFLEET_LOCAL": "1",
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "REDIS_URL": settings.REDIS_URL,
        "VIRTFLEET_SQLITE_PATH": str(db["NAME"]),
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "VIRTFLEET_LAB_DIR": str(LAB_DIR),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    assert Path(db["NAME"]).exists(), "end-to-end tests need the file-based SQLite test database"
    return env


@pytest.fixture(scope="session")
def stack(stack_env, tmp_path_factory):
    logs = tmp_path_factory.mktemp("stack-logs")
    s = Stack(
        env={**stack_env, "VIRTFLEET_CONSOLE_PORT": ""}, http_port=free_port(), console_port=free_port(), logs=logs
    )
    s.env["VIRTFLEET_CONSOLE_PORT"] = str(s.console_port)
    s.start_web()
    s.start_worker()
    s.start_listener()
    yield s
    for name in list(s.procs):
        s.stop(name)


# --- the browser ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: run ./virtfleet setup (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def e2e_user(transactional_db, django_user_model):
    return django_user_model.objects.create_superuser(username="operator", password="e2e-Password-1")


@pytest.fixture
def page(browser, stack, e2e_user):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    p = context.new_page()
    p.set_default_timeout(15000)
    p.goto(stack.url + "/login/")
    p.fill("#id_username", "operator")
    p.fill("#id_password", "e2e-Password-1")
    p.click("button[type=submit]")
    p.wait_for_url(stack.url + "/")
    yield p
    context.close()


SCREENSHOTS = ROOT / "var" / "screenshots"


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def add_host_live(transactional_db):
    """Register a test-driver host from the test process (committed, visible to the stack)."""
    from hosts.services import host_add
    from hosts.services import host_sync as sync
    from tests.helpers import driver_uri

    def add(name, node_file):
        host = host_add(name=name, uri=driver_uri(node_file), request_sync=False)
        sync(host=host)
        return host

    return add
