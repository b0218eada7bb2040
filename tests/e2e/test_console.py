"""The in-browser console end to end: headless Chromium → daphne (ticket) → console proxy → the lab's
real QEMU VNC servers, directly (qemu+tcp host) and through an SSH tunnel (qemu+ssh host).

The screen is checked by its pixels: the lab guest's VGA text console (720x400) shows its ready
banner and a shell prompt, and typing into it lights up more of them.
"""

from __future__ import annotations

import os
from xml.etree import ElementTree as ET

import libvirt
import pytest
from defusedxml.ElementTree import fromstring as parse_xml

import lab
from tests.e2e.conftest import screenshot, signed_in, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CANVAS_STATS = """() => {
  const c = document.querySelector('#console-screen canvas');
  if (!c || !c.width) return null;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let lit = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 150) lit++;
  return {width: c.width, height: c.height, lit};
}"""


@pytest.fixture
def lab_hosts(lab_state, transactional_db):
    """lab1 registered by qemu+tcp, lab2 by qemu+ssh (its VNC on loopback is then reached by tunnel)."""
    from hosts.services import host_ensure, host_sync

    first, second = lab_state.real_hosts[:2]
    assert second.ssh_uri, "the lab must run with ssh=True (tests/e2e/conftest.py lab_state)"
    hosts = {}
    for lab_host, uri in ((first, first.uri), (second, second.ssh_uri)):
        host, _ = host_ensure(name=lab_host.name, uri=uri)
        result = host_sync(host=host)
        assert result.ok, f"{lab_host.name} did not sync: {result.error}"
        hosts[lab_host.name] = host
    return hosts


def running_guest(lab_host) -> str:
    guest = next(g for g in lab_host.guests if g.initial_state == "running")
    lab.wait_guest_ready(lab_host, guest.name, timeout=60)
    return guest.uuid


def open_console(page, stack, uuid: str, *, shot: str = "") -> None:
    """From the VM page, click Console and wait for the first frame."""
    page.goto(f"{stack.url}/vms/{uuid}/")
    if shot:
        screenshot(page, shot)
    page.click("#vm-actions [data-action=console]")
    page.wait_for_url(f"{stack.url}/vms/{uuid}/console/")
    page.wait_for_function("window.vfConsole && window.vfConsole.firstFrameAt !== null", timeout=20000)


def assert_guest_screen(page) -> dict:
    stats = page.evaluate(CANVAS_STATS)
    assert stats is not None, "no noVNC canvas on the page"
    assert (stats["width"], stats["height"]) == (720, 400), f"not the guest's VGA text screen: {stats}"
    # The banner and a prompt light a few thousand pixels; a blank or solid screen would not.
    assert 800 < stats["lit"] < 0.3 * stats["width"] * stats["height"], f"the screen shows no text: {stats}"
    assert page.locator("#console-status").get_attribute("class").endswith("status-connected")
    return stats


def latest_session(uuid: str):
    from console.models import ConsoleSession

    return ConsoleSession.objects.filter(vm_uuid=uuid).order_by("-opened_at").first()


def test_console_shows_the_guests_screen_and_takes_keys(page, console_stack, lab_state, lab_hosts):
    uuid = running_guest(lab_state.real_hosts[0])
    open_console(page, console_stack, uuid, shot="vm-page-console-button")
    before = assert_guest_screen(page)
    assert "Connected to" in page.locator("#console-status").inner_text()
    screenshot(page, "console-connected")

    page.click("[data-cmd=paste]")
    page.fill("#paste-text", "echo typed-through-the-virtfleet-console; uname -a")
    page.check("#paste-enter")
    page.click("#paste-dialog button[value=type]")
    wait_for(
        lambda: page.evaluate(CANVAS_STATS)["lit"] > before["lit"] + 1500,
        15,
        message="the typed command and its output to appear on the guest's screen",
    )
    screenshot(page, "console-typed")

    typed = page.evaluate(CANVAS_STATS)
    page.click(".console-menu > summary")
    screenshot(page, "console-keys-menu")
    page.click(".console-menu-items [data-combo='Control_L c']")  # the shell prints ^C and a new prompt
    wait_for(lambda: page.evaluate(CANVAS_STATS)["lit"] > typed["lit"] + 200, 10, message="Ctrl-C to reach the guest")
    session = latest_session(uuid)
    assert session.username == "operator" and session.closed_at is None and session.host_name == "lab1"

    page.goto(f"{console_stack.url}/vms/{uuid}/")  # leaving the page closes the console
    wait_for(lambda: latest_session(uuid).closed_at is not None, 10, message="the session to be recorded as closed")


def test_reused_ticket_is_refused_and_the_page_says_why(page, console_stack, lab_state, lab_hosts):
    uuid = running_guest(lab_state.real_hosts[0])
    open_console(page, console_stack, uuid)
    used = page.evaluate("({token: window.vfConsole.token, url: window.vfConsole.url})")
    # The same token straight at the proxy: refused with a close code and reason.
    closed = page.evaluate(
        """(url) => new Promise((resolve) => {
             const ws = new WebSocket(url, ['binary']);
             ws.onclose = (ev) => resolve({code: ev.code, reason: ev.reason});
           })""",
        used["url"],
    )
    assert closed == {"code": 4409, "reason": "ticket already used"}
    # And the page itself, handed the used ticket on Reconnect, explains it.
    page.route(
        f"**/vms/{uuid}/console/ticket/",
        lambda route: route.fulfill(status=201, json={**used, "expires_in": 30}),
    )
    page.click(".console-toolbar [data-cmd=reconnect]")
    page.wait_for_selector("#console-status.status-disconnected")
    assert "already used" in page.locator("#console-status").inner_text()
    assert page.locator("#console-explain").is_visible()
    assert "Reconnect to get a new ticket" in page.locator("#console-explain").inner_text()
    screenshot(page, "console-reused-ticket")


def test_another_users_ticket_is_refused(browser, page, console_stack, lab_state, lab_hosts, django_user_model):
    from console.services import console_ticket_issue
    from vms.models import VM

    uuid = running_guest(lab_state.real_hosts[0])
    operator = django_user_model.objects.get(username="operator")
    ticket = console_ticket_issue(user=operator, vm=VM.objects.get(uuid=uuid), http_host="127.0.0.1")
    url = f"ws://127.0.0.1:{console_stack.console_port}/?token={ticket.token}"

    from django.contrib.auth.models import Group

    mallory = django_user_model.objects.create_user(username="mallory", password="e2e-Password-2")
    mallory.groups.add(Group.objects.get(name="operator"))  # may open consoles, just not with this ticket
    with signed_in(browser, console_stack.url, "mallory", "e2e-Password-2") as other:
        other.route(
            f"**/vms/{uuid}/console/ticket/",
            lambda route: route.fulfill(status=201, json={"token": ticket.token, "url": url, "expires_in": 30}),
        )
        other.goto(f"{console_stack.url}/vms/{uuid}/console/")
        other.wait_for_selector("#console-status.status-disconnected")
        assert "issued to another user" in other.locator("#console-status").inner_text()
        screenshot(other, "console-other-users-ticket")


def test_console_through_an_ssh_tunnel(page, console_stack, lab_state, lab_hosts):
    uuid = running_guest(lab_state.real_hosts[1])
    assert lab_hosts["lab2"].uri.startswith("qemu+ssh://")
    open_console(page, console_stack, uuid)
    assert_guest_screen(page)
    assert "through ssh" in latest_session(uuid).target
    screenshot(page, "console-ssh-tunnel")


@pytest.fixture
def password_guest(lab_state, lab_hosts):
    """lab1's shut-off guest, redefined with a VNC password and started; restored afterwards."""
    from hosts.services import host_sync

    lab_host = lab_state.real_hosts[0]
    guest = next(g for g in lab_host.guests if g.initial_state == "shutoff")
    conn = libvirt.open(lab_host.unix_uri)
    dom = conn.lookupByUUIDString(guest.uuid)
    original = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_INACTIVE)
    root = parse_xml(original)
    root.find("./devices/graphics").set("passwd", "Vnc-pw42")
    conn.defineXML(ET.tostring(root, encoding="unicode"))
    dom = conn.lookupByUUIDString(guest.uuid)
    dom.create()
    try:
        lab.wait_guest_ready(lab_host, guest.name, timeout=60)
        host_sync(host=lab_hosts[lab_host.name])
        yield guest.uuid
    finally:
        if dom.isActive():
            dom.destroy()
        conn.defineXML(original)
        conn.close()


def test_vm_with_a_vnc_password_opens_without_the_browser_seeing_it(page, console_stack, password_guest):
    from vms.models import VM

    assert VM.objects.get(uuid=password_guest).graphics_password
    open_console(page, console_stack, password_guest)
    assert_guest_screen(page)
    assert "Vnc-pw42" not in page.content()
    assert "Vnc-pw42" not in console_stack.log("console")


def test_shut_off_vm_gets_an_explanation_instead_of_a_blank_screen(page, console_stack, lab_state, lab_hosts):
    guest = next(g for g in lab_state.real_hosts[0].guests if g.initial_state == "shutoff")
    page.goto(f"{console_stack.url}/vms/{guest.uuid}/")
    assert page.locator("#vm-actions [data-action=console]").get_attribute("aria-disabled") == "true"
    page.goto(f"{console_stack.url}/vms/{guest.uuid}/console/")
    explain = page.locator("#console-explain")
    assert explain.is_visible() and "shut off" in explain.inner_text()
    page.click("#console-explain [data-cmd=reconnect]")  # asks the server, which reads the live domain
    page.wait_for_selector("#console-status.status-unavailable")
    assert "shut off" in explain.inner_text() and "Start it first" in explain.inner_text()
    screenshot(page, "console-shut-off")


def test_vm_migrated_to_another_host_opens_there(page, console_stack, lab_state, lab_hosts):
    """Live-migrate a guest lab1 -> lab2 (through libvirt, as the migration feature will), then open it.

    It uses lab1's shut-off guest, started for the test and shut off again on lab1 afterwards: a
    migrated guest prints no new ready banner, so the shared lab's running guests are left alone.
    """
    from hosts.services import host_sync
    from vms.models import VM

    source, dest = lab_state.real_hosts[:2]
    guest = next(g for g in source.guests if g.initial_state == "shutoff")
    uuid = guest.uuid
    params = {libvirt.VIR_MIGRATE_PARAM_URI: "tcp://127.0.0.1", libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: "127.0.0.1"}
    flags = (
        libvirt.VIR_MIGRATE_LIVE
        | libvirt.VIR_MIGRATE_PEER2PEER
        | libvirt.VIR_MIGRATE_PERSIST_DEST
        | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    )
    src = libvirt.open(source.unix_uri)
    dst = libvirt.open(dest.unix_uri)
    src.lookupByUUIDString(uuid).create()
    try:
        lab.wait_guest_ready(source, guest.name, timeout=60)
        src.lookupByUUIDString(uuid).migrateToURI3(dest.uri, params, flags)
        for name in ("lab1", "lab2"):
            host_sync(host=lab_hosts[name])
        wait_for(lambda: VM.objects.get(uuid=uuid).host.name == "lab2", 15, message="the VM row to move to lab2")
        open_console(page, console_stack, uuid)
        assert_guest_screen(page)
        session = latest_session(uuid)
        assert session.host_name == "lab2" and "through ssh" in session.target
        screenshot(page, "console-after-migration")
    finally:
        page.goto("about:blank")
        try:
            moved = dst.lookupByUUIDString(uuid)
        except libvirt.libvirtError:
            moved = None  # never left lab1
        if moved is not None and moved.isActive():
            moved.migrateToURI3(source.uri, params, flags)
        dom = src.lookupByUUIDString(uuid)
        if dom.isActive():
            dom.destroy()
        src.close()
        dst.close()


# --- behind a TLS reverse proxy on the same origin (the README's nginx configuration) ---------------
NGINX = "/usr/sbin/nginx"
NGINX_CONF = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {dir}/cert.pem;
    ssl_certificate_key {dir}/key.pem;
    # the console proxy, published on the dashboard's own origin
    location /console/websockify {{
      proxy_pass http://127.0.0.1:{console_port};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_read_timeout 1h;
      proxy_buffering off;
    }}
    location / {{
      proxy_pass http://127.0.0.1:{http_port};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
}}
"""


@pytest.fixture
def proxied_stack(console_stack, tmp_path_factory):
    """A second web + console process configured for a TLS reverse proxy, and nginx in front of them."""
    import subprocess
    import sys

    from tests.bootstrap import free_port
    from tests.e2e.conftest import port_open

    if not os.access(NGINX, os.X_OK):
        pytest.fail("nginx is missing: run ./virtfleet setup (apt-get install nginx-light)")
    workdir = tmp_path_factory.mktemp("nginx")
    for sub in ("body", "proxy"):
        (workdir / sub).mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(workdir / "key.pem"), "-out", str(workdir / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    port, http_port, console_port = free_port(), free_port(), free_port()
    env = {
        "VIRTFLEET_BEHIND_PROXY": "1",
        "VIRTFLEET_CONSOLE_URL": "/console/websockify",
        "CSRF_TRUSTED_ORIGINS": f"https://127.0.0.1:{port}",
        "VIRTFLEET_CONSOLE_PORT": str(console_port),
    }
    s = console_stack
    web = s.start(
        "web-proxied",
        [sys.executable, "-m", "daphne", "--proxy-headers", "-b", "127.0.0.1", "-p", str(http_port),
         "dashboard.asgi:application"],
        env=env,
    )  # fmt: skip
    console = s.start(
        "console-proxied", [sys.executable, "manage.py", "console_proxy", "--port", str(console_port)], env=env
    )
    (workdir / "nginx.conf").write_text(
        NGINX_CONF.format(dir=workdir, port=port, http_port=http_port, console_port=console_port)
    )
    nginx = s.start("nginx", [NGINX, "-c", str(workdir / "nginx.conf"), "-p", str(workdir)])
    for proc, p, name in (
        (web, http_port, "web-proxied"),
        (console, console_port, "console-proxied"),
        (nginx, port, "nginx"),
    ):
        wait_for(lambda p=p, proc=proc: port_open(p) or proc.poll() is not None, 30, message=f"{name} to listen")
        assert proc.poll() is None, s.log(name) + (workdir / "error.log").read_text(errors="replace")
    yield f"https://127.0.0.1:{port}"
    for name in ("nginx", "console-proxied", "web-proxied"):
        s.stop(name)


def test_console_behind_a_tls_reverse_proxy_on_the_same_origin(browser, proxied_stack, lab_state, lab_hosts, e2e_user):
    uuid = running_guest(lab_state.real_hosts[0])
    with signed_in(browser, proxied_stack, ignore_https_errors=True) as page:
        open_console(page, type("Site", (), {"url": proxied_stack}), uuid)
        assert_guest_screen(page)
        url = page.evaluate("window.vfConsole.url")
        assert url.startswith(proxied_stack.replace("https://", "wss://") + "/console/websockify?token="), url
        assert page.locator("#console-info").inner_text() == "websocket encrypted"
        assert latest_session(uuid).client_address == "127.0.0.1"
        screenshot(page, "console-behind-tls-proxy")
