"""The console proxy's RFB handshakes, against a small fake VNC server and a fake browser."""

import socket
import struct
import time

import pytest

from tests.fakevnc import FakeVNCServer
from virt.console import VNCTarget, connect_target
from virt.rfb import RFBError, browser_handshake, server_handshake


@pytest.fixture
def vnc_server():
    servers = []

    def make(**kwargs):
        server = FakeVNCServer(**kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def handshake(server, password=""):
    stream = connect_target(VNCTarget(kind="tcp", host="127.0.0.1", port=server.port), timeout=2)
    try:
        version = server_handshake(stream, password=password, timeout=3)
        stream.sock.sendall(b"\x01")  # ClientInit (shared), as the browser would send it
        head = stream.sock.recv(24)
        return version, head
    finally:
        stream.close()


def test_vnc_password_authentication_succeeds_with_the_right_password(vnc_server):
    server = vnc_server(security=(2,), password="s3cr3t-pw")
    version, server_init = handshake(server, password="s3cr3t-pw")
    assert version == "3.8"
    assert struct.unpack(">HH", server_init[:4]) == (640, 480)


def test_wrong_vnc_password_is_refused_with_the_servers_reason(vnc_server):
    server = vnc_server(security=(2,), password="right")
    with pytest.raises(RFBError) as err:
        handshake(server, password="wrong")
    assert err.value.reason == "auth_failed"
    assert "wrong password" in err.value.message


def test_password_longer_than_eight_characters_uses_the_first_eight(vnc_server):
    server = vnc_server(security=(2,), password="12345678")
    assert handshake(server, password="12345678-and-more")[0] == "3.8"


def test_server_without_password_gets_security_none(vnc_server):
    server = vnc_server(security=(1,))
    assert handshake(server)[0] == "3.8"
    deadline = time.monotonic() + 5
    while not server.results and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.results == ["ok"]
    assert server.client_inits == [b"\x01"]


def test_server_asking_for_a_password_the_xml_does_not_have_is_refused(vnc_server):
    server = vnc_server(security=(2,), password="x")
    with pytest.raises(RFBError) as err:
        handshake(server, password="")
    assert err.value.reason == "auth_failed"
    assert "holds none" in err.value.message


def test_tls_only_vnc_is_refused_naming_what_it_asks_for(vnc_server):
    server = vnc_server(security=(19,))
    with pytest.raises(RFBError) as err:
        handshake(server)
    assert err.value.reason == "unsupported"
    assert "VeNCrypt" in err.value.message


def test_rfb_33_server_with_password(vnc_server):
    server = vnc_server(version=b"RFB 003.003\n", security=(2,), password="pw")
    assert handshake(server, password="pw")[0] == "3.3"


def test_something_that_is_not_vnc_is_refused():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    stream = connect_target(VNCTarget(kind="tcp", host="127.0.0.1", port=port), timeout=2)
    peer, _ = listener.accept()
    peer.sendall(b"HTTP/1.1 400\r\n")
    try:
        with pytest.raises(RFBError) as err:
            server_handshake(stream, timeout=2)
        assert err.value.reason == "not_vnc"
    finally:
        stream.close()
        peer.close()
        listener.close()


def test_browser_is_offered_only_security_none():
    sent = []
    incoming = bytearray(b"RFB 003.008\n\x01")

    def recv_exactly(n):
        data = bytes(incoming[:n])
        del incoming[:n]
        return data

    assert browser_handshake(recv_exactly, sent.append) == "3.8"
    assert sent == [b"RFB 003.008\n", bytes([1, 1]), struct.pack(">I", 0)]


def test_browser_choosing_vnc_auth_is_refused():
    incoming = bytearray(b"RFB 003.008\n\x02")

    def recv_exactly(n):
        data = bytes(incoming[:n])
        del incoming[:n]
        return data

    with pytest.raises(RFBError):
        browser_handshake(recv_exactly, lambda _data: None)
