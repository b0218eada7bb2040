"""Console services: single-use tickets for a VM's VNC console, and the record of console sessions.

Flow: the page asks ``console_ticket_issue`` → it reads the VM's LIVE graphics from libvirt, decides
how the proxy reaches them (virt.console.console_target) and stores that, with the VNC password,
under a random token in Redis for at most 30 s → the browser opens the console proxy's websocket
with the token → the proxy calls ``console_connect_authorize`` (takes the ticket with GETDEL, so
it works once, and checks it belongs to the signed-in user) → ``console_session_open`` /
``console_session_close`` record who watched which VM when. The browser only ever holds the token.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
import secrets
import time
import uuid as uuidlib
from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from audit.services import audit_record, audit_refusal
from core import access
from core.access import may_open_console
from core.errors import Conflict, Forbidden, ServiceError
from hosts.connections import host_connection
from virt import DomainNotFound, HostUnreachable, VirtError, parse_uri
from virt.console import ConsoleUnavailable, VNCTarget, console_target
from vms.models import VM

from .models import ConsoleSession

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)
MARK_TTL = 3600  # how long a token is remembered as used/issued, to say "reused" or "expired"
_TAKE = """
local data = redis.call('GETDEL', KEYS[1])
if data then
  redis.call('SET', KEYS[2], 'spent', 'EX', ARGV[1])
  return {'ok', data}
end
local mark = redis.call('GET', KEYS[2])
if mark then return {mark, ''} end
return {'unknown', ''}
"""


# --- refusals the proxy sends to the browser as websocket close codes --------------------------------
@dataclass(frozen=True)
class Refusal:
    code: int  # websocket close code (4000-4999: ours)
    short: str  # the close reason (at most 123 bytes on the wire)
    message: str  # what a person reads


REFUSALS = {
    "missing": Refusal(4400, "no console ticket", "The request carried no console ticket."),
    "not_signed_in": Refusal(
        4401, "not signed in", "You are not signed in (or your session ended): sign in again, then reconnect."
    ),
    "origin": Refusal(4403, "origin not allowed", "The console was opened from a page of another site."),
    "other_user": Refusal(
        4403, "ticket belongs to another user", "This console ticket was issued to another user: it is not yours."
    ),
    "forbidden": Refusal(4403, "not permitted", "You may not open this VM's console."),
    "unknown": Refusal(
        4404, "unknown ticket", "This console ticket is not valid: it was never issued (forged or mistyped)."
    ),
    "reused": Refusal(
        4409, "ticket already used", "This console ticket was already used; each ticket opens one connection."
    ),
    "expired": Refusal(4410, "ticket expired", "This console ticket expired before it was used."),
}


class TicketRefused(ServiceError):
    """A console ticket cannot be used; ``reason`` is a key of REFUSALS."""

    status_code = 403

    def __init__(self, reason: str, message: str = "", *, vm_uuid: str = "", owner: int | None = None):
        refusal = REFUSALS[reason]
        super().__init__(message or refusal.message, code=reason)
        self.reason = reason
        self.refusal = refusal
        self.vm_uuid = vm_uuid  # the ticket's VM and owner, when the ticket was taken (audit)
        self.owner = owner


@dataclass(frozen=True)
class Ticket:
    """What the browser gets: a token, where to use it, for how long. Nothing about the endpoint."""

    token: str
    url: str
    expires_in: int
    vm_uuid: str


@dataclass(frozen=True)
class TicketData:
    """What a ticket stands for, as the proxy takes it from Redis. The password never shows in repr."""

    user_id: int
    vm_uuid: str
    vm_name: str
    host_id: int
    host_name: str
    target: VNCTarget
    issued_at: float
    password: str = field(default="", repr=False)

    def to_json(self) -> str:
        return json.dumps(
            {
                "user_id": self.user_id,
                "vm_uuid": self.vm_uuid,
                "vm_name": self.vm_name,
                "host_id": self.host_id,
                "host_name": self.host_name,
                "target": self.target.to_dict(),
                "issued_at": self.issued_at,
                "password": self.password,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> TicketData:
        data = json.loads(text)
        return cls(
            user_id=int(data["user_id"]),
            vm_uuid=str(data["vm_uuid"]),
            vm_name=str(data["vm_name"]),
            host_id=int(data["host_id"]),
            host_name=str(data["host_name"]),
            target=VNCTarget.from_dict(data["target"]),
            issued_at=float(data["issued_at"]),
            password=str(data.get("password", "")),
        )


# --- Redis ---------------------------------------------------------------------------------------------
_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    return _client


def _keys(token: str) -> tuple[str, str]:
    # Keyed by a hash: whoever reads Redis sees no usable token.
    digest = hashlib.sha256(token.encode()).hexdigest()
    return f"virtfleet:console:ticket:{digest}", f"virtfleet:console:mark:{digest}"


def ticket_ttl() -> int:
    return max(1, min(30, int(settings.VIRTFLEET.get("CONSOLE_TICKET_TTL", 30))))


# --- tickets ---------------------------------------------------------------------------------------------
def console_websocket_url(*, token: str, secure: bool, http_host: str) -> str:
    """The websocket URL the browser must open: the proxy's port on the page's host, or the path /
    URL configured by VIRTFLEET_CONSOLE_URL (behind a reverse proxy on the same origin)."""
    cfg = settings.VIRTFLEET
    configured = (cfg.get("CONSOLE_URL") or "").strip()
    scheme = "wss" if secure else "ws"
    if configured.startswith(("ws://", "wss://")):
        base = configured
    elif configured:
        base = f"{scheme}://{http_host}/{configured.lstrip('/')}"
    else:
        if http_host.startswith("["):
            hostname = http_host[: http_host.find("]") + 1]
        else:
            hostname = http_host.rsplit(":", 1)[0] if ":" in http_host else http_host
        base = f"{scheme}://{hostname or '127.0.0.1'}:{cfg.get('CONSOLE_PORT', 6080)}/"
    return f"{base}{'&' if '?' in base else '?'}token={token}"


def _live_endpoint(vm: VM):
    """(host, endpoint) of the host that runs ``vm`` now: its recorded host, or the other host that
    also reports it (a migration the inventory has not caught up with yet)."""
    try:
        return vm.host, host_connection(vm.host).graphics_endpoint(str(vm.uuid))
    except DomainNotFound:
        if vm.also_on_id is None:
            raise
        return vm.also_on, host_connection(vm.also_on).graphics_endpoint(str(vm.uuid))


def console_ticket_issue(*, user, vm: VM, secure: bool = False, http_host: str = "127.0.0.1") -> Ticket:
    """Issue a single-use ticket to ``vm``'s console for ``user``, valid for at most 30 s.

    Reads the live domain from its host (the inventory may lag behind a migration or a restart) and
    refuses, saying why, when the console cannot be reached.
    """
    if user is None or not user.is_authenticated:
        raise Forbidden("Sign in to open a console.")
    access.require(user, access.CONSOLE, vm, what="console.ticket")
    if vm.is_gone:
        raise Conflict(f"{vm.name} no longer exists on any host.", code="gone")
    host = vm.host
    try:
        host, endpoint = _live_endpoint(vm)
        target = console_target(endpoint, uri=parse_uri(host.uri), ssh_key_path=host.ssh_key_path)
    except DomainNotFound:
        raise Conflict(
            f"{host.name} no longer has {vm.name}: it may have moved or been deleted. Reload the page.", code="gone"
        ) from None
    except ConsoleUnavailable as exc:
        hint = f" {exc.hint[0].upper()}{exc.hint[1:]}" if exc.hint else ""
        raise Conflict(f"The console of {vm.name} cannot be opened: {exc.message}.{hint}", code=exc.reason) from None
    except HostUnreachable as exc:
        raise Conflict(f"Its host {host.name} cannot be reached: {exc}", code="host_unreachable") from None
    except VirtError as exc:
        raise Conflict(f"Could not read the console of {vm.name} from {host.name}: {exc}", code="virt_error") from None
    token = secrets.token_urlsafe(32)
    data = TicketData(
        user_id=user.pk,
        vm_uuid=str(vm.uuid),
        vm_name=vm.name,
        host_id=host.pk,
        host_name=host.name,
        target=target,
        issued_at=time.time(),
        password=endpoint.password,
    )
    ttl = ticket_ttl()
    ticket_key, mark_key = _keys(token)
    try:
        pipe = _redis().pipeline()
        pipe.set(ticket_key, data.to_json(), px=ttl * 1000)
        pipe.set(mark_key, "expired", ex=MARK_TTL)  # what the token means once the ticket is gone
        pipe.execute()
    except redis.RedisError as exc:
        raise Conflict(f"Could not store the console ticket (Redis: {exc}).", code="redis") from None
    log.info("console ticket for %s issued to %s (via %s)", vm.name, user.get_username(), target.kind)
    return Ticket(
        token=token,
        url=console_websocket_url(token=token, secure=secure, http_host=http_host),
        expires_in=ttl,
        vm_uuid=str(vm.uuid),
    )


def console_ticket_take(*, token: str) -> TicketData:
    """Take a ticket out of Redis (it works once). Raises TicketRefused: reused, expired or unknown."""
    if not token:
        raise TicketRefused("missing")
    if not _TOKEN.match(token):
        raise TicketRefused("unknown")
    ticket_key, mark_key = _keys(token)
    status, payload = _redis().eval(_TAKE, 2, ticket_key, mark_key, MARK_TTL)
    status = status.decode() if isinstance(status, bytes) else str(status)
    if status == "ok":
        return TicketData.from_json(payload)
    if status == "spent":
        raise TicketRefused("reused")
    if status == "expired":
        raise TicketRefused("expired")
    raise TicketRefused("unknown")


def console_connect_authorize(*, token: str, user) -> TicketData:
    """What the proxy asks for a websocket: take the ticket and check it is ``user``'s, for a VM
    they may open. A ticket presented by someone else is used up all the same (it leaked)."""
    if user is None or not user.is_authenticated:
        # Do not burn the ticket: the owner's browser may still present it with a valid session.
        raise TicketRefused("not_signed_in")
    data = console_ticket_take(token=token)
    if data.user_id != user.pk:
        log.warning(
            "console ticket for %s issued to user %s was presented by %s",
            data.vm_name,
            data.user_id,
            user.get_username(),
        )
        raise TicketRefused("other_user", vm_uuid=data.vm_uuid, owner=data.user_id)
    vm = VM.objects.select_related("host").filter(uuid=data.vm_uuid).first()
    if vm is not None and not may_open_console(user, vm):
        raise TicketRefused("forbidden", vm_uuid=data.vm_uuid, owner=data.user_id)
    return data


# --- session records -------------------------------------------------------------------------------------
def console_refused(*, reason: str, message: str, user, token_owner: int | None = None, vm_uuid: str = "",
                    client_address: str | None = None) -> None:  # fmt: skip
    """Record a console connection the proxy refused (reused, forged or foreign ticket, ...)."""
    vm = VM.objects.filter(uuid=vm_uuid).select_related("host").first() if vm_uuid else None
    audit_refusal(
        user=user if user is not None and user.is_authenticated else None,
        action="console.open",
        target=vm,
        message=message,
        details={"reason": reason, **({"ticket_owner": token_owner} if token_owner else {})},
        ip=_ip(client_address),
        **({} if user is not None and user.is_authenticated else {"username": "anonymous"}),
    )


def console_session_open(*, ticket: TicketData, user, client_address: str | None) -> ConsoleSession:
    """Record that ``user`` opened the console of the ticket's VM (written by the proxy), in the
    console sessions and in the audit log."""
    vm = VM.objects.filter(uuid=ticket.vm_uuid).first()
    session = ConsoleSession.objects.create(
        user=user if user is not None and user.is_authenticated else None,
        username=user.get_username() if user is not None and user.is_authenticated else "",
        vm=vm,
        vm_uuid=uuidlib.UUID(ticket.vm_uuid),
        vm_name=ticket.vm_name,
        host_name=ticket.host_name,
        target=ticket.target.describe()[:300],
        client_address=_ip(client_address),
    )
    audit_record(
        action="console.open",
        user=user if user is not None and user.is_authenticated else None,
        ip=session.client_address,
        target_type="vm",
        target_id=ticket.vm_uuid,
        target_name=ticket.vm_name,
        vm_uuid=ticket.vm_uuid,
        vm_name=ticket.vm_name,
        host_ref=ticket.host_id,
        host_name=ticket.host_name,
        message=f"console session {session.pk} opened (via {ticket.target.kind})",
        details={"session": session.pk, "via": ticket.target.kind},
    )
    return session


def console_session_close(*, session: ConsoleSession, reason: str, bytes_in: int = 0, bytes_out: int = 0) -> None:
    """Record how and when a console session ended (console sessions and audit log)."""
    closed_at = timezone.now()
    updated = ConsoleSession.objects.filter(pk=session.pk, closed_at__isnull=True).update(
        closed_at=closed_at, close_reason=reason[:300], bytes_in=bytes_in, bytes_out=bytes_out
    )
    if not updated:
        return
    failed = reason.startswith(("VNC server unreachable", "VNC handshake failed", "error:"))
    audit_record(
        action="console.close",
        user=session.user if session.user_id else None,
        username=session.username,
        ip=session.client_address,
        target_type="vm",
        target_id=str(session.vm_uuid),
        target_name=session.vm_name,
        vm_uuid=session.vm_uuid,
        vm_name=session.vm_name,
        host_ref=session.vm.host_id if session.vm_id and session.vm else None,
        host_name=session.host_name,
        outcome="failed" if failed else "ok",
        message=f"console session {session.pk} closed: {reason}"[:500],
        details={
            "session": session.pk,
            "seconds": round((closed_at - session.opened_at).total_seconds(), 1),
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
        },
    )


def console_sessions(*, vm_uuid: str | uuidlib.UUID) -> QuerySet[ConsoleSession]:
    """The console sessions of one VM, newest first."""
    return ConsoleSession.objects.filter(vm_uuid=vm_uuid).order_by("-opened_at", "-id")


def _ip(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None
