"""The console proxy: websockify with Virtfleet's tickets in front of the VMs' VNC servers.

websockify's token plugins map a token to a host:port and nothing more; a Virtfleet ticket also
binds the user and carries the VNC password and, for qemu+ssh hosts, an SSH route. So our "plugin"
is websockify's request handler, specialised: for each websocket it

1. refuses with a websocket close code + reason the page shows (4400-4410, see console.services.REFUSALS)
   when the Origin is foreign, the session cookie names nobody, or the ticket is missing, reused,
   expired, forged or another user's;
2. records a ConsoleSession, connects to the VM's VNC server (TCP, unix socket, or ssh -W tunnel)
   and authenticates to it (VNC password via DES, or None);
3. offers the browser security type None, then relays bytes both ways until either side closes,
   and records how the session ended.

websockify runs each connection in a forked child process (its own model), so Django's database
connections are opened per connection and closed at its end.
"""

from __future__ import annotations

import logging
import os
import re
import select
import time
from dataclasses import dataclass
from importlib import import_module
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.contrib.auth import get_user
from django.db import close_old_connections, connections
from django.http.cookie import parse_cookie
from django.http.request import split_domain_port, validate_host
from websockify.websocket import WebSocketWantReadError
from websockify.websocketproxy import ProxyRequestHandler, WebSocketProxy
from websockify.websockifyserver import WebSockifyServer

from core.net import forwarded_client
from virt.console import ConsoleConnectFailed, VNCStream, connect_target
from virt.rfb import RFBError, browser_handshake, server_handshake

from .services import (
    TicketRefused,
    console_connect_authorize,
    console_refused,
    console_session_close,
    console_session_open,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 6.0
HANDSHAKE_TIMEOUT = 10.0
CLOSE_UNREACHABLE = 4502  # the VM's VNC server cannot be reached
CLOSE_HANDSHAKE = 4503  # it answered, but the VNC handshake failed (password, security type)
CLOSE_VM_CLOSED = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL = 1011
_TOKEN_IN_TEXT = re.compile(r"token=[^&\s'\"]+")


def _short(text: str, limit: int = 120) -> str:
    """A websocket close reason: at most 123 bytes of UTF-8."""
    data = text.encode()[:limit]
    return data.decode(errors="ignore")


class _BrowserGone(Exception):
    pass


@dataclass
class _Relay:
    """One console connection as it goes: its VNC stream, byte counts, and how it ended."""

    stream: VNCStream | None = None
    counted: _Counted | None = None
    reason: str = "closed"


class _Counted:
    """The VNC socket as websockify's relay sees it, counting bytes each way."""

    def __init__(self, sock):
        self.sock = sock
        self.received = 0
        self.sent = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, size: int) -> bytes:
        data = self.sock.recv(size)
        self.received += len(data)
        return data

    def send(self, data: bytes) -> int:
        sent = self.sock.send(data)
        self.sent += sent
        return sent


class ConsoleRequestHandler(ProxyRequestHandler):
    """One browser websocket → one VM's VNC server, through a single-use ticket."""

    def log_message(self, format, *args) -> None:
        # websockify logs request paths; tickets are single-use, but they stay out of logs anyway.
        super().log_message("%s", _TOKEN_IN_TEXT.sub("token=<redacted>", format % args))

    def validate_connection(self) -> None:
        # Nothing is checked before the upgrade: a refused handshake shows in the browser only as
        # "error 1006"; after the upgrade a close code and reason say why.
        pass

    def auth_connection(self) -> None:
        pass

    # --- who is asking --------------------------------------------------------------------------------
    def _origin_allowed(self) -> bool:
        origin = self.headers.get("Origin")
        if not origin:
            return True  # not a browser (browsers always send Origin on websockets)
        netloc = urlsplit(origin).netloc
        domain, _port = split_domain_port(netloc)
        return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)

    def _session_user(self):
        cookies = parse_cookie(self.headers.get("Cookie", ""))
        key = cookies.get(settings.SESSION_COOKIE_NAME)
        if not key:
            return None
        engine = import_module(settings.SESSION_ENGINE)
        user = get_user(SimpleNamespace(session=engine.SessionStore(key)))
        return user if user.is_authenticated else None

    def _client_ip(self) -> str:
        peer = self.client_address[0] if self.client_address else ""
        # Behind our reverse proxy (VIRTFLEET_BEHIND_PROXY) it says who; otherwise the header is ignored.
        return forwarded_client(self.headers.get("X-Forwarded-For", ""), peer) or peer

    # --- the browser side of the RFB handshake -----------------------------------------------------------
    def _recv_exactly(self, count: int) -> bytes:
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        while len(self._inbox) < count:
            if not self.request.pending():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([self.request], [], [], remaining)[0]:
                    raise _BrowserGone("the browser did not answer the VNC handshake in time")
            try:
                message = self.request.recvmsg()
            except WebSocketWantReadError:
                continue
            if message is None:
                raise _BrowserGone("the browser closed the connection during the VNC handshake")
            self._inbox += message
        data, self._inbox = self._inbox[:count], self._inbox[count:]
        return data

    def _send(self, data: bytes) -> None:
        pending = self.send_frames([data])
        while pending:
            select.select([], [self.request], [], 5)
            pending = self.send_frames()

    # --- the connection --------------------------------------------------------------------------------
    def new_websocket_client(self) -> None:
        close_old_connections()
        try:
            self._serve()
        finally:
            connections.close_all()

    def _serve(self) -> None:
        """Authorize the websocket, record the session, connect to the VM and relay until one side closes."""
        self._inbox = b""
        user, ticket = self._authorize()
        session = console_session_open(ticket=ticket, user=user, client_address=self._client_ip())
        log.info("console of %s opened by %s via %s", ticket.vm_name, user.get_username(), ticket.target.kind)
        state = _Relay()
        try:
            state.stream = self._open_vnc(ticket, state)
            self._greet_browser(state)
            self._relay(state)
        except WebSockifyServer.Terminate:
            state.reason = "the console proxy stopped"
            raise
        except self.CClose:
            raise
        except Exception as exc:
            state.reason = f"error: {exc}"
            raise
        finally:
            if state.stream is not None:
                state.stream.close()
            counted = state.counted
            console_session_close(session=session, reason=state.reason, bytes_in=counted.received if counted else 0,
                                  bytes_out=counted.sent if counted else 0)  # fmt: skip
            log.info("console of %s closed: %s", ticket.vm_name, state.reason)

    def _authorize(self):
        """(user, ticket) of this websocket, or a close with the code and reason the page shows."""
        token = (parse_qs(urlsplit(self.path).query).get("token") or [""])[0].strip()
        user = None
        try:
            if not self._origin_allowed():
                raise TicketRefused("origin")
            user = self._session_user()
            return user, console_connect_authorize(token=token, user=user)
        except TicketRefused as exc:
            log.info("console connection from %s refused: %s", self._client_ip(), exc.refusal.short)
            self._record_refusal(exc, user)
            raise self.CClose(exc.refusal.code, exc.refusal.short) from None
        except Exception:
            # Redis or the database failing: the browser gets a reason, the log the traceback.
            log.exception("console connection from %s failed while checking its ticket", self._client_ip())
            raise self.CClose(CLOSE_INTERNAL, "console proxy error (see its log)") from None

    def _record_refusal(self, exc: TicketRefused, user) -> None:
        try:
            console_refused(reason=exc.reason, message=exc.refusal.message, user=user, token_owner=exc.owner,
                            vm_uuid=exc.vm_uuid, client_address=self._client_ip())  # fmt: skip
        except Exception:  # the audit log must not keep the refusal from reaching the browser
            log.exception("could not record the refused console connection")

    def _open_vnc(self, ticket, state: _Relay) -> VNCStream:
        """Connect to the VM's VNC server and log in to it (VNC password, or none)."""
        try:
            stream = connect_target(ticket.target, timeout=CONNECT_TIMEOUT)
        except ConsoleConnectFailed as exc:
            state.reason = f"VNC server unreachable: {exc}"
            raise self.CClose(CLOSE_UNREACHABLE, _short(state.reason)) from None
        state.stream = stream
        try:
            server_handshake(stream, password=ticket.password, timeout=HANDSHAKE_TIMEOUT)
        except RFBError as exc:
            code = CLOSE_UNREACHABLE if exc.reason in ("ssh_failed", "timeout", "closed") else CLOSE_HANDSHAKE
            state.reason = f"VNC handshake failed: {exc.message}"
            raise self.CClose(code, _short(state.reason)) from None
        return stream

    def _greet_browser(self, state: _Relay) -> None:
        """The browser's side of the handshake: security type None (the proxy logged in already)."""
        try:
            browser_handshake(self._recv_exactly, self._send)
        except (_BrowserGone, RFBError) as exc:
            state.reason = f"browser left during the handshake: {exc}"
            raise self.CClose(CLOSE_GOING_AWAY, _short(state.reason)) from None

    def _relay(self, state: _Relay) -> None:
        """Bytes both ways until either side closes (websockify's loop), counted."""
        assert state.stream is not None
        state.counted = _Counted(state.stream.sock)
        if self._inbox:
            state.stream.sock.sendall(self._inbox)
            state.counted.sent += len(self._inbox)
        try:
            self.do_proxy(state.counted)
        except self.CClose as exc:
            code, why = exc.args[0], exc.args[1] if len(exc.args) > 1 else ""
            if why == "Target closed":
                state.reason = "the VM's VNC server closed the connection"
                raise self.CClose(CLOSE_VM_CLOSED, "VM console closed") from None
            state.reason = f"closed by the browser (code {code})"
            raise


class ConsoleProxy(WebSocketProxy):
    """websockify's server with our handler; one forked process per connection."""

    def __init__(self, **kwargs):
        super().__init__(RequestHandlerClass=ConsoleRequestHandler, **kwargs)

    def started(self) -> None:
        scheme = "ws:// and wss://" if self.key or os.path.isfile(self.cert) else "ws://"
        self.msg(
            "  - %s on %s:%s -> the VNC servers named by Virtfleet console tickets",
            scheme,
            self.listen_host,
            self.listen_port,
        )
