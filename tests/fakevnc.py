"""A small VNC (RFB) server on loopback for tests of the proxy's handshake.

It speaks RFB 3.3 / 3.8 with security None, VNC Authentication or types the proxy must refuse —
variants and faults libvirt cannot produce on demand. The end-to-end tests use QEMU's real VNC.
Its own DES key derivation is written independently of virt.rfb (a bit-reversal table).
"""

from __future__ import annotations

import os
import socket
import struct
import threading

from Crypto.Cipher import DES

_MIRROR = [int(f"{i:08b}"[::-1], 2) for i in range(256)]


def expected_response(password: str, challenge: bytes) -> bytes:
    key = bytes(_MIRROR[b] for b in password.encode()[:8].ljust(8, b"\0"))
    return DES.new(key, DES.MODE_ECB).encrypt(challenge)  # noqa: S304 (VNC auth is DES by definition)


def _recv(conn: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


class FakeVNCServer:
    """Serve one RFB handshake per connection, then ServerInit and a fixed message; records what it saw."""

    def __init__(self, *, version: bytes = b"RFB 003.008\n", security: tuple[int, ...] = (2,), password: str = ""):
        self.version = version
        self.security = security
        self.password = password
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.results: list[str] = []  # per connection: "ok", "bad-password", "client-left", ...
        self.client_inits: list[bytes] = []
        self.received_after_init: list[bytes] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self.results.append(self._session(conn))
        except (ConnectionError, OSError):
            self.results.append("client-left")
        finally:
            conn.close()

    def _session(self, conn: socket.socket) -> str:
        conn.sendall(self.version)
        _recv(conn, 12)
        if self.version.endswith(b"003\n"):
            chosen = self.security[0]
            conn.sendall(struct.pack(">I", chosen))
        else:
            conn.sendall(bytes([len(self.security), *self.security]))
            chosen = _recv(conn, 1)[0]
        if chosen == 2:
            challenge = os.urandom(16)
            conn.sendall(challenge)
            if _recv(conn, 16) != expected_response(self.password, challenge):
                conn.sendall(struct.pack(">I", 1) + struct.pack(">I", 14) + b"wrong password")
                return "bad-password"
            conn.sendall(struct.pack(">I", 0))
        elif chosen == 1 and not self.version.endswith(b"003\n"):
            conn.sendall(struct.pack(">I", 0))
        self.client_inits.append(_recv(conn, 1))
        name = b"fake-vm"
        pixel_format = bytes([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0])
        conn.sendall(struct.pack(">HH", 640, 480) + pixel_format + struct.pack(">I", len(name)) + name)
        conn.settimeout(2)
        try:
            data = conn.recv(4096)
            if data:
                self.received_after_init.append(data)
        except (TimeoutError, ConnectionError):
            pass  # the client sent nothing more, or left: the handshake itself succeeded
        return "ok"

    def close(self) -> None:
        self._stop = True
        self.sock.close()
