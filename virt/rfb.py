"""Just enough of the RFB (VNC) protocol for the console proxy to authenticate on the browser's behalf.

The proxy does the handshake with the VM's VNC server itself — protocol version, then security
type 2 "VNC Authentication" (DES of the server's challenge with the password) or 1 "None" — and
then offers the browser security type None, so the browser never learns the password. After both
handshakes the two streams line up at ClientInit and bytes are relayed unchanged. RFC 6143.
"""

from __future__ import annotations

import logging
import re
import struct
import subprocess
import time
from collections.abc import Callable

from Crypto.Cipher import DES

from .console import VNCStream, wait_readable
from .errors import VirtError

NONE, VNC_AUTH = 1, 2
SECURITY_NAMES = {
    0: "invalid", 1: "None", 2: "VNC password", 5: "RA2", 6: "RA2ne", 16: "Tight", 18: "TLS",
    19: "VeNCrypt (TLS/x509)", 20: "SASL", 22: "XVP", 30: "Apple ARD", 113: "MS Logon II", 129: "Unix logon",
}  # fmt: skip
log = logging.getLogger(__name__)
_VERSION = re.compile(rb"^RFB (\d{3})\.(\d{3})\n$")


class RFBError(VirtError):
    """The VNC handshake failed; ``reason`` is a short code (auth_failed, unsupported, closed, ...)."""

    def __init__(self, message: str, *, reason: str, hint: str = ""):
        super().__init__(message, hint=hint)
        self.reason = reason


def vnc_auth_response(password: str, challenge: bytes) -> bytes:
    """The 16-byte answer to a VNC Authentication challenge.

    VNC uses the password's first 8 bytes (zero-padded) as a DES key with the bits of every byte
    mirrored, and encrypts the challenge in ECB mode.
    """
    key = password.encode("latin-1", errors="replace")[:8].ljust(8, b"\0")
    key = bytes(int(f"{b:08b}"[::-1], 2) for b in key)
    return DES.new(key, DES.MODE_ECB).encrypt(challenge)  # noqa: S304 (VNC auth is DES by definition)


class _StreamReader:
    """Read exact byte counts from a VNC stream before a deadline."""

    def __init__(self, stream: VNCStream, deadline: float):
        self.stream = stream
        self.deadline = deadline

    def exactly(self, count: int, what: str) -> bytes:
        data = b""
        while len(data) < count:
            if not wait_readable(self.stream.sock, self.deadline):
                raise RFBError(
                    f"the VNC server at {self.stream.target.describe()} sent no {what} in time",
                    reason="timeout",
                )
            try:
                chunk = self.stream.sock.recv(count - len(data))
            except OSError as exc:
                raise RFBError(f"reading the VNC {what} failed: {exc.strerror or exc}", reason="closed") from None
            if not chunk:
                self._closed(what)
            data += chunk
        return data

    def _closed(self, what: str) -> None:
        if self.stream.process is not None:
            try:
                self.stream.process.wait(2)
            except subprocess.TimeoutExpired:
                log.debug("ssh still runs after the tunnel closed")
            detail = self.stream.ssh_error()
            if detail or self.stream.process.poll() not in (None, 0):
                raise RFBError(
                    f"the SSH tunnel to {self.stream.target.describe()} failed: {detail or 'ssh exited'}",
                    reason="ssh_failed",
                    hint="check the host's SSH key and that its sshd allows TCP forwarding.",
                )
        raise RFBError(
            f"the VNC server at {self.stream.target.describe()} closed the connection before sending its {what}",
            reason="closed",
        )

    def reason_string(self) -> str:
        (length,) = struct.unpack(">I", self.exactly(4, "failure reason length"))
        return self.exactly(min(length, 4096), "failure reason").decode(errors="replace")


def _parse_version(data: bytes) -> tuple[int, int]:
    match = _VERSION.match(data)
    if not match:
        raise RFBError("the other side does not speak RFB (VNC)", reason="not_vnc")
    return int(match.group(1)), int(match.group(2))


def server_handshake(stream: VNCStream, *, password: str = "", timeout: float = 8.0) -> str:
    """Run the client half of the RFB handshake with a VNC server up to a successful SecurityResult.

    Returns the protocol version agreed ("3.3", "3.7" or "3.8"). Raises RFBError saying what failed.
    The server then waits for ClientInit, which the browser sends through the relay.
    """
    read = _StreamReader(stream, time.monotonic() + timeout)
    sock = stream.sock
    major, minor = _parse_version(read.exactly(12, "protocol version"))
    if major != 3 or minor < 3:
        raise RFBError(f"unsupported RFB version {major}.{minor}", reason="unsupported")
    minor = 8 if minor >= 8 else (7 if minor == 7 else 3)
    sock.sendall(b"RFB 003.%03d\n" % minor)
    if minor == 3:
        (chosen,) = struct.unpack(">I", read.exactly(4, "security type"))
        if chosen == 0:
            raise RFBError(f"the VNC server refused the connection: {read.reason_string()}", reason="refused")
        offered = [chosen]
    else:
        (count,) = struct.unpack(">B", read.exactly(1, "security types"))
        if count == 0:
            raise RFBError(f"the VNC server refused the connection: {read.reason_string()}", reason="refused")
        offered = list(read.exactly(count, "security types"))
        if password and VNC_AUTH in offered:
            chosen = VNC_AUTH
        elif NONE in offered:
            chosen = NONE
        elif VNC_AUTH in offered:
            chosen = VNC_AUTH
        else:
            names = ", ".join(SECURITY_NAMES.get(t, str(t)) for t in offered)
            raise RFBError(
                f"the VNC server asks for {names}, which the console proxy does not support",
                reason="unsupported",
                hint="use plain VNC (optionally with a password) on the VM's graphics device.",
            )
        sock.sendall(bytes([chosen]))
    if chosen == VNC_AUTH:
        if not password:
            raise RFBError(
                "the VNC server asks for a password, but the VM's definition holds none",
                reason="auth_failed",
                hint="set the password in the VM's graphics device (passwd=...) so libvirt knows it.",
            )
        sock.sendall(vnc_auth_response(password, read.exactly(16, "authentication challenge")))
    elif chosen != NONE:
        raise RFBError(f"the VNC server chose {SECURITY_NAMES.get(chosen, chosen)} security", reason="unsupported")
    if chosen == VNC_AUTH or minor == 8:
        (result,) = struct.unpack(">I", read.exactly(4, "security result"))
        if result != 0:
            detail = read.reason_string() if minor == 8 else ""
            raise RFBError(
                "the VNC server refused the VM's password" + (f": {detail}" if detail else ""),
                reason="auth_failed",
                hint="the password in the VM's definition does not match its running VNC server.",
            )
    return f"3.{minor}"


def browser_handshake(recv_exactly: Callable[[int], bytes], send: Callable[[bytes], None]) -> str:
    """Run the server half of the RFB handshake with the browser, offering only security type None.

    ``recv_exactly(n)`` returns n bytes from the browser (raising when it goes away); ``send``
    sends bytes to it. Returns the version the browser chose.
    """
    send(b"RFB 003.008\n")
    major, minor = _parse_version(recv_exactly(12))
    if major != 3 or minor < 3:
        raise RFBError(f"the browser asked for RFB {major}.{minor}", reason="unsupported")
    if minor < 7:
        send(struct.pack(">I", NONE))
        return "3.3"
    send(bytes([1, NONE]))
    chosen = recv_exactly(1)[0]
    if chosen != NONE:
        raise RFBError(f"the browser chose security type {chosen}, not None", reason="unsupported")
    if minor >= 8:
        send(struct.pack(">I", 0))
        return "3.8"
    return "3.7"
