"""The console proxy process (manage.py console_proxy) with a websocket client in the browser's place.

The VM is a test-driver domain whose VNC endpoint points at a fake VNC server with a password (a
server libvirt's test driver cannot provide); the real QEMU VNC is exercised in tests/e2e.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest
from django.conf import settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from console.models import ConsoleSession
from tests.bootstrap import ROOT, free_port
from tests.fakevnc import FakeVNCServer
from tests.helpers import database_env
from vms.models import VM

UUID = "44444444-4444-4444-8444-444444444401"
ORIGIN = "http://127.0.0.1:8000"


def node_xml(port: int, password: str) -> str:
    return f"""<node>
  <cpu><mhz>2400</mhz><model>x86_64</model><active>2</active><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads></cpu>
  <memory>4194304</memory>
  <domain type="test">
    <name>proxied</name><uuid>{UUID}</uuid><memory unit="MiB">256</memory><vcpu>1</vcpu>
    <os><type arch="x86_64">hvm</type></os>
    <devices><graphics type="vnc" port="{port}" autoport="no" listen="127.0.0.1" passwd="{password}"/></devices>
  </domain>
</node>"""


@pytest.fixture
def proxy(transactional_db, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "VIRTFLEET_LOCAL": "1",
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "REDIS_URL": settings.REDIS_URL,
        **database_env(),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    log = open(tmp_path / "proxy.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "console_proxy", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert proc.poll() is None, (tmp_path / "proxy.log").read_text()
            time.sleep(0.05)
    settings.VIRTFLEET = {**settings.VIRTFLEET, "CONSOLE_PORT": port}
    proc.log_path = tmp_path / "proxy.log"
    yield proc
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(10)
    log.close()


@pytest.fixture
def vnc(tmp_path):
    """A fake VNC server with password 'pw-1234' and a test-driver host whose VM points at it."""
    from hosts.services import host_add, host_sync

    server = FakeVNCServer(security=(2,), password="pw-1234")

    def host_with(password="pw-1234", port=None):  # noqa: S107
        path = tmp_path / "node.xml"
        path.write_text(node_xml(port or server.port, password))
        host = host_add(name="proxied-host", uri=f"test:///{path}", request_sync=False)
        host_sync(host=host)
        return VM.objects.select_related("host").get(uuid=UUID)

    server.host_with = host_with
    yield server
    server.close()


def signed_in(client, django_user_model, username):
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user(username=username, password=f"pw-{username}-123")
    user.groups.add(Group.objects.get(name="operator"))
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def ticket_url(client) -> str:
    response = client.post(f"/vms/{UUID}/console/ticket/", HTTP_HOST="127.0.0.1:8000")
    assert response.status_code == 201, response.content
    return response.json()["url"]


def open_ws(url, session_key=None, origin=ORIGIN):
    headers = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session_key}"} if session_key else {}
    return ws_connect(url, origin=origin, additional_headers=headers, subprotocols=["binary"], open_timeout=5)


def refusal_of(url, session_key=None, origin=ORIGIN):
    with open_ws(url, session_key, origin) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    return closed.value.rcvd.code, closed.value.rcvd.reason


def browser_handshake(ws) -> bytes:
    """What noVNC does: RFB 3.8, security None, ClientInit; returns ServerInit."""
    assert ws.recv(timeout=5) == b"RFB 003.008\n"
    ws.send(b"RFB 003.008\n")
    assert ws.recv(timeout=5) == bytes([1, 1]), "the browser must be offered security type None only"
    ws.send(bytes([1]))
    assert ws.recv(timeout=5) == struct.pack(">I", 0)
    ws.send(bytes([1]))
    return ws.recv(timeout=5)


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_browser_gets_the_screen_without_ever_seeing_the_password(proxy, vnc, client, django_user_model):
    vnc.host_with()
    key = signed_in(client, django_user_model, "alice")
    url = ticket_url(client)
    with open_ws(url, key) as ws:
        server_init = browser_handshake(ws)
        assert server_init.endswith(b"fake-vm") and struct.unpack(">HH", server_init[:4]) == (640, 480)
        ws.send(b"\x03\x00\x00\x00\x00\x00\x02\x80\x01\xe0")  # FramebufferUpdateRequest, relayed as is
        assert wait_for(lambda: vnc.received_after_init)
    assert vnc.received_after_init[0].startswith(b"\x03")
    assert wait_for(lambda: ConsoleSession.objects.filter(closed_at__isnull=False).exists())
    session = ConsoleSession.objects.get()
    assert (session.username, session.vm_name, session.host_name) == ("alice", "proxied", "proxied-host")
    assert session.client_address == "127.0.0.1" and session.bytes_in > 0 and session.bytes_out > 0
    log = proxy.log_path.read_text()
    assert "pw-1234" not in log
    assert url.split("token=")[1] not in log and "token=<redacted>" in log
    from audit.models import AuditEvent

    assert wait_for(lambda: AuditEvent.objects.filter(action="console.close").exists())
    events = {e.action: e for e in AuditEvent.objects.filter(action__startswith="console.")}
    assert (events["console.open"].username, events["console.open"].ip) == ("alice", "127.0.0.1")
    assert events["console.close"].outcome == "ok" and events["console.close"].details["bytes_in"] > 0


def test_second_use_of_a_ticket_is_refused_as_reused(proxy, vnc, client, django_user_model):
    vnc.host_with()
    key = signed_in(client, django_user_model, "alice")
    url = ticket_url(client)
    with open_ws(url, key) as ws:
        browser_handshake(ws)
        assert refusal_of(url, key) == (4409, "ticket already used")


def test_another_users_ticket_is_refused(proxy, vnc, client, django_user_model):
    from django.test import Client

    vnc.host_with()
    alice_key = signed_in(client, django_user_model, "alice")
    url = ticket_url(client)
    bob_key = signed_in(Client(), django_user_model, "bob")
    assert refusal_of(url, bob_key) == (4403, "ticket belongs to another user")
    assert refusal_of(url, alice_key) == (4409, "ticket already used")  # a leaked ticket is spent
    from audit.models import AuditEvent

    refused = {e.username: e for e in AuditEvent.objects.filter(action="console.open", outcome="refused")}
    assert refused["bob"].vm_name == "proxied" and refused["bob"].details["reason"] == "other_user"
    assert refused["alice"].details == {"reason": "reused"}


def test_a_user_without_the_console_right_is_refused_by_the_proxy_too(proxy, vnc, client, django_user_model):
    """A ticket from before an administrator took the right away does not open the console."""
    from django.contrib.auth.models import Group

    vnc.host_with()
    key = signed_in(client, django_user_model, "alice")
    url = ticket_url(client)
    alice = django_user_model.objects.get(username="alice")
    alice.groups.set([Group.objects.get(name="viewer")])
    assert refusal_of(url, key) == (4403, "not permitted")


def test_no_session_unknown_ticket_and_foreign_origin_are_refused(proxy, vnc, client, django_user_model):
    vnc.host_with()
    key = signed_in(client, django_user_model, "alice")
    url = ticket_url(client)
    assert refusal_of(url) == (4401, "not signed in")
    assert refusal_of(url, key, origin="https://evil.example.com") == (4403, "origin not allowed")
    assert refusal_of(url.split("?")[0] + "?token=" + "A" * 43, key) == (4404, "unknown ticket")
    assert refusal_of(url.split("?")[0], key) == (4400, "no console ticket")
    with open_ws(url, key) as ws:  # none of the refusals above used the ticket up
        browser_handshake(ws)


def test_wrong_vnc_password_in_the_definition_is_reported(proxy, vnc, client, django_user_model):
    vnc.host_with(password="not-the-one")
    key = signed_in(client, django_user_model, "alice")
    code, reason = refusal_of(ticket_url(client), key)
    assert code == 4503 and "wrong password" in reason
    assert wait_for(lambda: ConsoleSession.objects.filter(close_reason__contains="handshake failed").exists())


def test_vnc_server_that_does_not_answer_is_reported(proxy, vnc, client, django_user_model):
    vnc.host_with(port=free_port())
    key = signed_in(client, django_user_model, "alice")
    code, reason = refusal_of(ticket_url(client), key)
    assert code == 4502 and "unreachable" in reason
