"""Virtfleet run the way docs/deploy.md runs it on several machines, here on one machine.

PostgreSQL (a scratch cluster this module starts), one Redis, two web processes behind nginx (the
guide's own deploy/nginx/virtfleet.conf, with TLS), two Celery workers and two listeners, in
production mode (no VIRTFLEET_LOCAL, DEBUG off, SECRET_KEY and DATABASE_URL from the environment,
static files collected). A job asked for through web #1's HTTP API runs on one of the workers and
its events reach a browser connected to web #2; killing the listener that holds a host hands the
host to the other listener, which then carries that host's events; nginx spreads requests over
both web processes and carries the live socket.

The rest of the test session keeps its SQLite test database: only these subprocesses see
DATABASE_URL, and the test reads PostgreSQL with psycopg directly. They use their own database
number on the session's Redis, so the session's worker never takes their jobs (and vice versa).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis
import requests
from django.conf import settings

from tests.bootstrap import ROOT, free_port
from tests.e2e.conftest import BYPASS_CSP, domstate, reset_guests, screenshot, sign_in, signed_in, virsh
from tests.e2e.stack import Stack, port_open, wait_for
from tests.postgres import PostgresCluster, PostgresMissing

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

USERNAME, PASSWORD = "operator", "multi-Machine-Password-1"
WEBS = ("web-1", "web-2")
WORKERS = ("worker-1", "worker-2")
LISTENERS = ("listener-1", "listener-2")
LEASE_TTL = 6.0
NGINX = "/usr/sbin/nginx"
NGINX_SITE = ROOT / "deploy" / "nginx" / "virtfleet.conf"
NGINX_MAIN = """
daemon off;
worker_processes 1;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/virtfleet.conf;
}}
"""


# --- an HTTP client of one web process, signed in the way a browser is (session cookie + CSRF) ----------
class Api:
    def __init__(self, base: str, session: requests.Session | None = None):
        self.base = base
        self.session = session or requests.Session()

    def login(self, username: str, password: str) -> Api:
        form = self.session.get(f"{self.base}/login/", timeout=10)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert form.status_code == 200 and token, f"no login form at {self.base}/login/: {form.status_code}"
        response = self.session.post(
            f"{self.base}/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)},
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 302, f"login on {self.base} failed: {response.status_code}"
        return self

    def get(self, path: str) -> dict | list:
        response = self.session.get(self.base + path, timeout=10)
        assert response.status_code == 200, f"GET {self.base}{path}: {response.status_code} {response.text[:300]}"
        return response.json()

    def post(self, path: str, data: dict) -> tuple[int, dict]:
        response = self.session.post(
            self.base + path, json=data, headers={"X-CSRFToken": self.session.cookies["csrftoken"]}, timeout=30
        )
        return response.status_code, response.json()


# --- the fleet: every process of the deployment -------------------------------------------------------
@dataclass
class Fleet:
    stack: Stack
    pg: PostgresCluster
    redis: redis.Redis
    lab: object
    web_urls: dict[str, str]
    site: str  # https:// through nginx
    site_http: str  # http:// through nginx (redirects)
    site_cert: str  # nginx's self-signed certificate, to verify TLS against
    static_root: str
    api1: Api  # signed in on web-1
    host_ids: dict[str, int]  # lab host name -> host id in PostgreSQL

    def logs(self, *names: str, tail: int = 40) -> str:
        names = names or tuple(self.stack.procs)
        out = [f"(full logs under {self.stack.logs})"]
        for name in names:
            lines = self.stack.log(name).splitlines()[-tail:]
            out.append(f"--- {name} (last {len(lines)} lines)\n" + "\n".join(lines))
        return "\n".join(out)

    def wait(self, predicate, timeout: float, message: str, *logs: str):
        """wait_for, with the named processes' logs in the failure message."""
        try:
            return wait_for(predicate, timeout, interval=0.1, message=message)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs(*logs)}") from None

    def lease_holders(self) -> dict[str, str | None]:
        """Which listener holds each lab host's lease, read from Redis as an operator would."""
        keys = [f"virtfleet:lease:host:{pk}" for pk in self.host_ids.values()]
        values = self.redis.mget(keys)
        return {name: (v.decode() if v else None) for name, v in zip(self.host_ids, values, strict=True)}

    def vm(self, name: str) -> dict:
        found = [vm for vm in self.api1.get(f"/api/vms/?q={name}")["results"] if vm["name"] == name]
        assert len(found) == 1, found
        return found[0]

    def job_done(self, api: Api, job_id: int) -> dict | None:
        job = api.get(f"/api/jobs/{job_id}/")
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None


def _own_redis_db(url: str) -> str:
    """The session's Redis server, another database number: same engine, nothing shared by accident."""
    parts = urlsplit(url)
    current = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(current + 1) % 16}"))


def _manage(stack: Stack, *args: str, env: dict | None = None) -> None:
    name = "manage-" + args[0]
    with open(stack.logs / f"{name}.log", "ab") as log:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**stack.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=300,
        )
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{stack.log(name)}"


def _nginx_site(*, tls_port: int, http_port: int, web_ports: list[int], static_root: str, cert_dir) -> str:
    """deploy/nginx/virtfleet.conf with this machine's ports, certificate and STATIC_ROOT."""
    conf = NGINX_SITE.read_text()
    replacements = {
        "listen 443 ssl http2;": f"listen 127.0.0.1:{tls_port} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
        "server 127.0.0.1:8001;": f"server 127.0.0.1:{web_ports[0]};",
        "server 127.0.0.1:8002;": f"server 127.0.0.1:{web_ports[1]};",
        "/etc/ssl/virtfleet/fullchain.pem": str(cert_dir / "cert.pem"),
        "/etc/ssl/virtfleet/privkey.pem": str(cert_dir / "key.pem"),
        "/var/lib/virtfleet/static/": f"{static_root}/",
    }
    for old, new in replacements.items():
        assert old in conf, f"{NGINX_SITE} no longer has {old!r}: update this test with it"
        conf = conf.replace(old, new)
    return conf


def _start_nginx(stack: Stack, workdir, site: str, port: int) -> None:
    if not os.access(NGINX, os.X_OK):
        pytest.fail("nginx is not installed: run ./virtfleet setup (apt-get install nginx-light)")
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / sub).mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(workdir / "key.pem"), "-out", str(workdir / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    (workdir / "virtfleet.conf").write_text(site)
    (workdir / "nginx.conf").write_text(NGINX_MAIN.format(dir=workdir))
    proc = stack.start("nginx", [NGINX, "-e", str(workdir / "error.log"), "-p", str(workdir), "-c", "nginx.conf"])
    wait_for(lambda: port_open(port) or proc.poll() is not None, 15, message="nginx to listen")
    error_log = workdir / "error.log"
    assert proc.poll() is None, stack.log("nginx") + (error_log.read_text() if error_log.exists() else "")


@pytest.fixture(scope="module")
def fleet(lab_state, tmp_path_factory):
    with contextlib.ExitStack() as cleanup:  # undone in reverse order, each step even if one fails
        reset_guests(lab_state)
        cleanup.callback(reset_guests, lab_state)
        try:
            pg = PostgresCluster(port=free_port()).start()
        except PostgresMissing as exc:
            pytest.fail(str(exc))
        cleanup.callback(pg.stop)
        redis_url = _own_redis_db(settings.REDIS_URL)
        client = redis.Redis.from_url(redis_url)
        client.flushdb()
        cleanup.callback(client.close)
        cleanup.callback(client.flushdb)
        ports = {name: free_port() for name in (*WEBS, "nginx", "nginx-http")}
        var_dir = tmp_path_factory.mktemp("multi-machine-var")
        # Production mode, as /etc/virtfleet/virtfleet.env sets it. The test's own HTTP client talks to
        # web #1 without TLS, hence cookies without the Secure flag.
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("VIRTFLEET_LOCAL", "VIRTFLEET_SQLITE_PATH", "DJANGO_ALLOW_ASYNC_UNSAFE")
        }
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "dashboard.settings",
                "DATABASE_URL": pg.url,
                "REDIS_URL": redis_url,
                "SECRET_KEY": secrets.token_urlsafe(50),
                "VIRTFLEET_SECRETS_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
                "DEBUG": "0",
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "CSRF_TRUSTED_ORIGINS": f"https://127.0.0.1:{ports['nginx']}",
                "VIRTFLEET_BEHIND_PROXY": "1",
                "VIRTFLEET_VAR_DIR": str(var_dir),
                "VIRTFLEET_SECURE_COOKIES": "0",
                "CELERY_TASK_ALWAYS_EAGER": "0",
                "PYTHONUNBUFFERED": "1",
            }
        )
        logs = tmp_path_factory.mktemp("multi-machine-logs")
        stack = Stack(env=env, http_port=ports["web-1"], console_port=free_port(), logs=logs)
        cleanup.callback(lambda: [stack.stop(name) for name in list(stack.procs)])

        # Once per release, from one machine: the schema, the static files; then the first user.
        _manage(stack, "migrate", "--noinput")
        _manage(stack, "collectstatic", "--noinput")
        _manage(
            stack,
            "createsuperuser",
            "--noinput",
            "--username",
            USERNAME,
            "--email",
            "operator@example.com",
            env={"DJANGO_SUPERUSER_PASSWORD": PASSWORD},
        )
        for name in LISTENERS:
            stack.start_listener(name, ttl=LEASE_TTL)
        with ThreadPoolExecutor(max_workers=4) as pool:
            started = [pool.submit(stack.start_web, name, ports[name]) for name in WEBS]
            started += [pool.submit(stack.start_worker, name) for name in WORKERS]
            for future in started:
                future.result()
        static_root = str(var_dir / "static")
        nginx_dir = tmp_path_factory.mktemp("nginx")
        site = _nginx_site(
            tls_port=ports["nginx"],
            http_port=ports["nginx-http"],
            web_ports=[ports[name] for name in WEBS],
            static_root=static_root,
            cert_dir=nginx_dir,
        )
        _start_nginx(stack, nginx_dir, site, ports["nginx"])
        web_urls = {name: f"http://127.0.0.1:{ports[name]}" for name in WEBS}
        fleet = Fleet(
            stack=stack,
            pg=pg,
            redis=client,
            lab=lab_state,
            web_urls=web_urls,
            site=f"https://127.0.0.1:{ports['nginx']}",
            site_http=f"http://127.0.0.1:{ports['nginx-http']}",
            site_cert=str(nginx_dir / "cert.pem"),
            static_root=static_root,
            api1=Api(web_urls["web-1"]).login(USERNAME, PASSWORD),
            host_ids={},
        )
        # Both listeners are up before there are hosts, so they split the hosts between them.
        fleet.wait(
            lambda: {m.decode() for m in client.zrange("virtfleet:listeners", 0, -1)} == set(LISTENERS),
            30,
            "both listeners to announce themselves in Redis",
            *LISTENERS,
        )
        # Hosts are added as an operator adds them: through the API, which checks each URI by
        # connecting. Lab hosts share 127.0.0.1, so migrations must be told their address.
        for h in lab_state.real_hosts:
            status, host = fleet.api1.post(
                "/api/hosts/", {"name": h.name, "uri": h.uri, "migration_address": "127.0.0.1"}
            )
            assert status == 201, host
            fleet.host_ids[h.name] = host["id"]
        yield fleet


def _watched(fleet: Fleet) -> None:
    """Both lab hosts leased — one per listener — connected, and their guests listed."""
    fleet.wait(
        lambda: sorted(filter(None, fleet.lease_holders().values())) == sorted(LISTENERS),
        30,
        "each listener to hold one lab host's lease",
        *LISTENERS,
    )
    for name, pk in fleet.host_ids.items():
        fleet.wait(
            lambda pk=pk: fleet.api1.get(f"/api/hosts/{pk}/")["status"] == "connected",
            30,
            f"host {name} to be connected",
            *LISTENERS,
        )
        fleet.wait(
            lambda name=name: (
                {vm["name"] for vm in fleet.api1.get(f"/api/vms/?q={name}-")["results"]}
                >= {f"{name}-vm1", f"{name}-vm2"}
            ),
            30,
            f"the VMs of {name} to be listed",
            *LISTENERS,
            *WORKERS,
        )


# --- the browser, signed in on web #2 -------------------------------------------------------------------
@pytest.fixture
def web2(browser, fleet):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, **BYPASS_CSP)
    base = fleet.web_urls["web-2"]
    page = context.new_page()
    sign_in(page, base, USERNAME, PASSWORD)  # the session cookie serves every page of this context
    page.close()

    def open_live(path: str):
        p = context.new_page()
        p.set_default_timeout(15000)
        p.goto(base + path)
        p.wait_for_selector("#live-indicator.live-up")
        # Anything pushed to this page from now on is recorded, and so is every time the page shows
        # "Live updates down" (its socket dropped); a reload would clear these marks.
        p.evaluate(
            """window.__noReload = true; window.__events = []; window.__drops = 0;
               document.addEventListener('vf:event', (e) => window.__events.push(e.detail));
               const indicator = document.getElementById('live-indicator');
               new MutationObserver(() => { if (indicator.classList.contains('live-down')) window.__drops += 1; })
                 .observe(indicator, { attributes: true, attributeFilter: ['class'] });"""
        )
        return p

    yield open_live
    context.close()


def row_state(page, uuid: str) -> str:
    return page.locator(f'#vm-rows tr[data-uuid="{uuid}"] [data-field="state"]').inner_text().strip().lower()


def pushed_states(page, uuid: str) -> list[str]:
    """The states of ``uuid`` that reached this page as vm.updated events (not by a refetch), in order,
    repeats of one state counted once."""
    states = page.evaluate(
        f"window.__events.filter((e) => e.type === 'vm.updated' && e.vm.uuid === '{uuid}').map((e) => e.vm.state)"
    )
    return [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]


def stayed_live(page) -> bool:
    """The page never reloaded and its socket never dropped."""
    return page.evaluate("window.__noReload === true && window.__drops === 0")


def wait_row_state(page, uuid: str, state: str, timeout: float = 10000) -> None:
    page.wait_for_function(
        f"""document.querySelector('#vm-rows tr[data-uuid="{uuid}"] [data-field=state]')
            ?.innerText.trim().toLowerCase() === '{state}'""",
        timeout=timeout,
    )


def pause_behind_its_back(page, lab_host, guest: str, uuid: str) -> None:
    """Suspend ``guest`` with virsh (not through Virtfleet), see the row turn paused by a pushed event,
    resume it and see it running again."""
    virsh(lab_host, "suspend", guest)
    try:
        wait_row_state(page, uuid, "paused")
        assert pushed_states(page, uuid) == ["paused"]
    finally:
        virsh(lab_host, "resume", guest)
    wait_row_state(page, uuid, "running")


# --- the tests ---------------------------------------------------------------------------------------------
def test_a_job_asked_of_web_1_runs_on_a_worker_and_reaches_a_browser_on_web_2(fleet, web2):
    _watched(fleet)
    lab1 = fleet.lab.real_hosts[0]
    guest = f"{lab1.name}-vm1"
    vm = fleet.vm(guest)
    assert vm["state"] == "running" and domstate(lab1, guest) == "running"
    fleet_page = web2("/")
    vm_page = web2(f"/vms/{vm['uuid']}/")
    assert row_state(fleet_page, vm["uuid"]) == "running"

    status, job = fleet.api1.post(f"/api/vms/{vm['uuid']}/actions/", {"action": "suspend"})
    assert status == 202 and job["status"] == "queued", job
    job = fleet.wait(lambda: fleet.job_done(fleet.api1, job["id"]), 30, "the suspend job to end", *WORKERS)
    assert job["status"] == "succeeded", job

    # One of the two workers ran it — the one whose log has the task — and libvirt agrees.
    ran_on = job["worker"].split("@")[0]
    assert ran_on in WORKERS, job["worker"]
    other = next(w for w in WORKERS if w != ran_on)
    assert job["celery_task_id"] in fleet.stack.log(ran_on)
    assert job["celery_task_id"] not in fleet.stack.log(other)
    assert domstate(lab1, guest) == "paused"

    # The browser on web #2 shows it without reloading: the fleet row, and the job on the VM page,
    # pushed by the worker through Redis to the other web process.
    wait_row_state(fleet_page, vm["uuid"], "paused")
    vm_page.wait_for_function(
        f"""document.querySelector('#vm-jobs tr[data-job-id="{job["id"]}"] [data-field=status]')
            ?.innerText.trim().toLowerCase() === 'succeeded'"""
    )
    pushed = vm_page.evaluate(
        f"""window.__events.filter((e) => e.type === 'job.updated' && e.job.id === {job["id"]})
              .map((e) => [e.job.status, e.job.worker])"""
    )
    assert ["succeeded", job["worker"]] in pushed, pushed
    assert "paused" in pushed_states(fleet_page, vm["uuid"])
    assert stayed_live(fleet_page) and stayed_live(vm_page)
    screenshot(fleet_page, "multi-machine-web2-paused")

    # No sticky sessions: web #2 knows the session signed in on web #1 (sessions live in PostgreSQL).
    api2 = Api(fleet.web_urls["web-2"], session=fleet.api1.session)
    assert api2.get(f"/api/jobs/{job['id']}/")["worker"] == job["worker"]
    with psycopg.connect(fleet.pg.url) as conn:
        row = conn.execute("SELECT status, worker FROM jobs_job WHERE id = %s", (job["id"],)).fetchone()
        others = conn.execute("SELECT count(*) - 1 FROM pg_stat_activity WHERE datname = current_database()")
        print(f"PostgreSQL connections of 2 web, 2 workers x 8 threads, 2 listeners: {others.fetchone()[0]}")
    assert row == ("succeeded", job["worker"])
    for url in fleet.web_urls.values():
        assert requests.get(url + "/healthz", timeout=10).json() == {"ok": True}

    # And back, asked of web #2 this time.
    status, resume = api2.post(f"/api/vms/{vm['uuid']}/actions/", {"action": "resume"})
    assert status == 202, resume
    resume = fleet.wait(lambda: fleet.job_done(api2, resume["id"]), 30, "the resume job to end", *WORKERS)
    assert resume["status"] == "succeeded" and resume["worker"].split("@")[0] in WORKERS, resume
    assert domstate(lab1, guest) == "running"
    wait_row_state(fleet_page, vm["uuid"], "running")


def test_the_guides_nginx_configuration_spreads_requests_and_carries_the_live_socket(fleet, browser):
    _watched(fleet)

    def served(name: str, path: str) -> int:
        return fleet.stack.log(name).count(f'"GET {path}"')

    # Plain http is sent to https; requests are spread over both web processes.
    redirect = requests.get(fleet.site_http + "/", allow_redirects=False, timeout=10)
    assert redirect.status_code == 301 and redirect.headers["Location"].startswith("https://")
    before = {name: served(name, "/healthz") for name in WEBS}
    for _ in range(6):
        assert requests.get(fleet.site + "/healthz", verify=fleet.site_cert, timeout=10).json() == {"ok": True}
    fleet.wait(
        lambda: all(served(name, "/healthz") > before[name] for name in WEBS),
        5,
        "both web processes to answer requests through nginx",
        *WEBS,
    )
    # Static files come from STATIC_ROOT through nginx itself, not from a web process.
    before = {name: served(name, "/static/js/live.js") for name in WEBS}
    script = requests.get(fleet.site + "/static/js/live.js", verify=fleet.site_cert, timeout=10)
    assert script.status_code == 200 and "javascript" in script.headers["Content-Type"]
    with open(os.path.join(fleet.static_root, "js", "live.js"), "rb") as collected:
        assert script.content == collected.read()
    assert {name: served(name, "/static/js/live.js") for name in WEBS} == before

    # A browser signs in over TLS (CSRF trusts the site's origin) and gets live events through nginx.
    with signed_in(browser, fleet.site, USERNAME, PASSWORD, ignore_https_errors=True) as page:
        page.wait_for_selector("#live-indicator.live-up")
        page.evaluate(
            """window.__events = [];
               document.addEventListener('vf:event', (e) => window.__events.push(e.detail));"""
        )
        lab2 = fleet.lab.real_hosts[1]
        guest = f"{lab2.name}-vm1"
        pause_behind_its_back(page, lab2, guest, fleet.vm(guest)["uuid"])
        assert page.evaluate("location.protocol") == "https:"
        screenshot(page, "multi-machine-through-nginx")


def test_killing_the_listener_that_holds_a_host_moves_the_host_to_the_other_listener(fleet, web2):
    """Last in this module: it leaves one listener running."""
    _watched(fleet)
    lab1 = fleet.lab.real_hosts[0]
    guest = f"{lab1.name}-vm1"
    uuid = fleet.vm(guest)["uuid"]
    holders = fleet.lease_holders()
    victim = holders[lab1.name]
    survivor = next(name for name in LISTENERS if name != victim)
    assert holders == {lab1.name: victim, fleet.lab.real_hosts[1].name: survivor}, holders
    fleet_page = web2("/")
    assert row_state(fleet_page, uuid) == "running"

    resyncs_before = fleet.stack.log(survivor).count(f"host {lab1.name} connected and resynced")
    killed_at = time.monotonic()
    fleet.stack.stop(victim, sig=signal.SIGKILL)  # no goodbye: its leases must lapse on their own
    fleet.wait(
        lambda: fleet.lease_holders()[lab1.name] == survivor, LEASE_TTL + 15, "the survivor to take the lease", survivor
    )
    fleet.wait(
        lambda: fleet.stack.log(survivor).count(f"host {lab1.name} connected and resynced") > resyncs_before,
        20,
        f"{survivor} to connect to {lab1.name}",
        survivor,
    )
    took_over = time.monotonic() - killed_at
    assert fleet.lease_holders() == {lab1.name: survivor, fleet.lab.real_hosts[1].name: survivor}

    # Changes made behind Virtfleet's back after the takeover reach the browser: only the
    # survivor's event connection can carry them (no beat, no job, the resync is already done).
    fleet_page.evaluate("window.__events = []")
    pause_behind_its_back(fleet_page, lab1, guest, uuid)
    assert pushed_states(fleet_page, uuid) == ["paused", "running"]
    assert stayed_live(fleet_page)  # through the whole takeover
    assert fleet.api1.get(f"/api/hosts/{fleet.host_ids[lab1.name]}/")["status"] == "connected"
    print(f"{lab1.name} moved from {victim} to {survivor} in {took_over:.1f} s (lease TTL {LEASE_TTL:g} s)")
