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
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings

from tests.bootstrap import ROOT, free_port
from tests.e2e.stack import Stack, port_open, wait_for

__all__ = ["Stack", "port_open", "wait_for"]

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
        "VIRTFLEET_UPLOAD_STALL_TIMEOUT": "15",  # a truncated upload fails in seconds, not minutes
        "VIRTFLEET_LEASE_POLL": "2",  # a guest's new lease reaches the pages in seconds
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


E2E_USER, E2E_PASSWORD = "operator", "e2e-Password-1"


@pytest.fixture
def e2e_user(transactional_db, django_user_model):
    return django_user_model.objects.create_superuser(username=E2E_USER, password=E2E_PASSWORD)


# Tests probe pages with page.wait_for_function / evaluate, which Playwright runs as strings in the
# page: the Content-Security-Policy (script-src 'self', no eval) would refuse them. Functional tests
# bypass it; tests/e2e/test_security.py checks every page under the real policy.
BYPASS_CSP = {"bypass_csp": True}


def sign_in(page, base: str, username: str = E2E_USER, password: str = E2E_PASSWORD) -> None:
    """Sign in through the sign-in form at ``base`` and land on the fleet page."""
    page.goto(base + "/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


@contextmanager
def signed_in(
    browser, base: str, username: str = E2E_USER, password: str = E2E_PASSWORD, *, real_csp: bool = False, **options
) -> Iterator:
    """A page of a fresh browser context, signed in at ``base``; the context closes afterwards.
    ``real_csp`` keeps the Content-Security-Policy in force (see BYPASS_CSP)."""
    context = browser.new_context(
        viewport=options.pop("viewport", {"width": 1440, "height": 900}), **({} if real_csp else BYPASS_CSP), **options
    )
    try:
        p = context.new_page()
        p.set_default_timeout(15000)
        sign_in(p, base, username, password)
        yield p
    finally:
        context.close()


@pytest.fixture
def page(browser, stack, e2e_user):
    with signed_in(browser, stack.url) as p:
        yield p


@pytest.fixture
def console_stack(stack):
    """The stack with its console proxy running."""
    if "console" not in stack.procs:
        stack.start_console()
    return stack


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


# --- the lab as the dashboard sees it ----------------------------------------------------------------
def virsh(lab_host, *args: str, check: bool = True) -> str:
    """Run virsh against a lab host, the way an operator would behind Virtfleet's back."""
    result = subprocess.run(["virsh", "-q", "-c", lab_host.unix_uri, *args], capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"virsh {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def domstate(lab_host, guest: str) -> str:
    return virsh(lab_host, "domstate", guest).splitlines()[0].strip()


def reset_guests(state) -> None:
    """Put every real lab guest back in the state lab.up leaves it in (tests change them)."""
    import lab

    for host in state.real_hosts:
        for guest in host.guests:
            want = "running" if guest.name.endswith("-vm1") else "shut off"
            now = domstate(host, guest.name) if guest.name in virsh(host, "list", "--all", "--name") else None
            if now is None:
                continue
            if want == "running" and now == "paused":
                virsh(host, "resume", guest.name)
            elif want == "running" and now != "running":
                virsh(host, "start", guest.name)
                lab.wait_guest_ready(host, guest.name, timeout=30)  # the serial log restarts with QEMU
            elif want == "shut off" and now != "shut off":
                virsh(host, "destroy", guest.name)


@pytest.fixture
def lab_hosts(lab_state, transactional_db):
    """The lab's real hosts registered in the dashboard (as `manage.py lab up` does), guests reset."""
    import lab
    from hosts.services import host_ensure, host_sync

    # A test that failed half-way may have left a host's libvirtd stopped: never let it cascade.
    current = lab.load_state(lab_state.base_dir)
    for dead in lab.dead_processes(current):
        name, _, program = dead.partition("/")
        if program.startswith("libvirtd"):
            lab.start_libvirtd(lab_state.base_dir, name)
    reset_guests(lab_state)
    hosts = []
    for h in lab_state.real_hosts:
        host, _ = host_ensure(name=h.name, uri=h.uri, migration_address="127.0.0.1")
        assert host_sync(host=host).ok, f"{h.name} did not answer"
        host.refresh_from_db()
        hosts.append(host)
    return hosts


@pytest.fixture
def real_broker():
    """Jobs requested from the test process go to Redis and a real worker, not run inline."""
    from dashboard.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield app
    app.conf.task_always_eager = before


class Api:
    """The JSON API with a personal token of ``user``, as a script would use it."""

    ENDED = ("succeeded", "failed", "cancelled")

    def __init__(self, base: str, user, name: str = "e2e"):
        import requests

        from accounts.services import token_create

        _instance, token = token_create(user=user, name=name, expires_in_days=1)
        self.base = base
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"Token {token}"

    def get(self, path: str):
        return self.s.get(f"{self.base}{path}", timeout=30)

    def post(self, path: str, body: dict | None = None):
        return self.s.post(f"{self.base}{path}", json=body or {}, timeout=30)

    def delete(self, path: str):
        return self.s.delete(f"{self.base}{path}", timeout=30)

    def job(self, response, timeout: float = 120):
        """The job a 202 answer started, once it has ended."""
        from jobs.models import Job

        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        return wait_for(lambda: (j := Job.objects.get(pk=job_id)).status in self.ENDED and j, timeout=timeout,
                        message=f"job {job_id} to end")  # fmt: skip
