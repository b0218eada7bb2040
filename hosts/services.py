"""Host services: add, edit, remove, sync, and record reachability."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from audit.services import audit_record, audit_refusal
from core import access
from core.dispatch import enqueue_on_commit
from core.errors import Conflict, ServiceError
from virt import Credentials, HostInfo, InvalidURI, VirtError, open_connection, parse_uri

from . import connections
from .events import host_changed, host_removed
from .inventory import Counts, families
from .models import Host, HostState

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,99}$")
ADD_CONNECT_TIMEOUT = 6.0


@dataclass(frozen=True)
class SyncResult:
    host: Host
    ok: bool
    error: str = ""
    created: int = 0
    updated: int = 0
    moved: int = 0
    gone: int = 0
    domains: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> int:
        return self.created + self.updated + self.moved + self.gone


# --- validation ---------------------------------------------------------------------------------------
def _clean_name(name: str, *, exclude_pk: int | None = None) -> str:
    name = (name or "").strip()
    if not name:
        raise ServiceError("Give the host a name.", field="name")
    if not NAME_RE.match(name):
        raise ServiceError(
            "Host names are up to 100 letters, digits, spaces, dots, dashes or underscores, "
            "starting with a letter or digit.",
            field="name",
        )
    clash = Host.objects.filter(name__iexact=name).exclude(pk=exclude_pk)
    if clash.exists():
        raise ServiceError(f"A host named {name!r} already exists; choose another name.", field="name")
    return name


def _clean_uri(uri: str, *, exclude_pk: int | None = None) -> str:
    try:
        parsed = parse_uri(uri)
    except InvalidURI as exc:
        raise ServiceError(f"Invalid libvirt URI: {exc}", field="uri") from None
    clash = Host.objects.filter(uri__iexact=parsed.uri).exclude(pk=exclude_pk).first()
    if clash is not None:
        raise ServiceError(f"This URI is already registered as host {clash.name!r}.", field="uri", code="duplicate")
    return parsed.uri


def _clean_peer_uri(uri: str) -> str:
    uri = (uri or "").strip()
    if not uri:
        return ""
    try:
        return parse_uri(uri).uri
    except InvalidURI as exc:
        raise ServiceError(f"Invalid URI for other hosts: {exc}", field="peer_uri") from None


def _clean_address(address: str) -> str:
    address = (address or "").strip()
    if not address:
        return ""
    try:
        ipaddress.ip_address(address)
        return address
    except ValueError:
        pass
    if re.match(
        r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$",
        address,
    ):
        return address
    raise ServiceError("The migration address must be an IP address or a host name.", field="migration_address")


def _clean_key(path: str) -> str:
    path = (path or "").strip()
    if not path:
        return ""
    if len(path) > 1024 or "\x00" in path:
        raise ServiceError("The SSH key path is not a valid file path.", field="ssh_key_path")
    if not os.path.isabs(path):
        raise ServiceError("Give the SSH key as an absolute path (e.g. /root/.ssh/id_ed25519).", field="ssh_key_path")
    if not os.path.isfile(path):
        raise ServiceError(f"No file at {path}: copy the private key there first.", field="ssh_key_path")
    if not os.access(path, os.R_OK):
        raise ServiceError(f"{path} is not readable by Virtfleet.", field="ssh_key_path")
    return path


def _probe(uri: str, credentials: Credentials) -> HostInfo:
    """Connect once with a short timeout and read the node facts, or explain why not."""
    try:
        conn = open_connection(uri, credentials, timeout=ADD_CONNECT_TIMEOUT)
    except VirtError as exc:
        raise ServiceError(f"Could not connect to {uri}: {exc}", field="uri", code="unreachable") from None
    try:
        return conn.node_info()
    except VirtError as exc:
        raise ServiceError(f"Connected to {uri}, but could not read the host: {exc}", field="uri") from None
    finally:
        conn.close()


def _apply_node_info(host: Host, info: HostInfo) -> None:
    for field in (
        "hostname", "host_uuid", "arch", "cpu_model", "cpu_vendor", "cpus", "cpu_mhz", "memory_bytes",
        "free_memory_bytes", "hypervisor_type", "hypervisor_version", "libvirt_version", "capabilities_xml",
    ):  # fmt: skip
        setattr(host, field, getattr(info, field))


# --- add / edit / remove ---------------------------------------------------------------------------------
@sensitive_variables("sasl_password", "credentials")
def host_add(
    *,
    name: str,
    uri: str,
    ssh_key_path: str = "",
    sasl_username: str = "",
    sasl_password: str = "",
    peer_uri: str = "",
    migration_address: str = "",
    allow_offline: bool = False,
    request_sync: bool = True,
    user=None,
) -> Host:
    """Register a host after checking its URI and that libvirt answers there.

    With ``allow_offline`` a host that cannot be reached now is still added (as unreachable);
    the listener connects once it comes up. ``request_sync`` has a worker read its inventory
    right away (the listener also does when it takes the host). ``user``: who asks (None: Virtfleet).
    """
    access.require(user, access.MANAGE, what="host.add")
    name = _clean_name(name)
    uri = _clean_uri(uri)
    ssh_key_path = _clean_key(ssh_key_path)
    peer_uri = _clean_peer_uri(peer_uri)
    migration_address = _clean_address(migration_address)
    sasl_username = (sasl_username or "").strip()
    credentials = Credentials(ssh_key_path=ssh_key_path, username=sasl_username, password=sasl_password or "")
    info: HostInfo | None = None
    error = ""
    try:
        info = _probe(uri, credentials)
    except ServiceError as exc:
        if not allow_offline or exc.code != "unreachable":
            raise
        error = exc.message
    now = timezone.now()
    with transaction.atomic():
        host = Host(
            name=name,
            uri=uri,
            ssh_key_path=ssh_key_path,
            sasl_username=sasl_username,
            sasl_password=sasl_password or "",
            peer_uri=peer_uri,
            migration_address=migration_address,
            state=HostState.CONNECTED if info else HostState.UNREACHABLE,
            last_error=error,
            last_seen=now if info else None,
            state_changed=now,
        )
        if info:
            _apply_node_info(host, info)
        host.save()
        host_changed(host)
        if info and request_sync:
            _request_sync(host)
        audit_record(
            action="host.add",
            user=user,
            target=host,
            message=f"added {host.uri}" + ("" if info else f" (not reachable yet: {error})"),
            details={"uri": host.uri, "ssh_key_path": ssh_key_path, "sasl_username": sasl_username,
                     "sasl_credential_set": bool(sasl_password)},
        )  # fmt: skip
    log.info("host %s added (%s)", host.name, host.uri)
    return host


@sensitive_variables("sasl_password", "password")
def host_update(
    *,
    host: Host,
    name: str,
    uri: str,
    ssh_key_path: str = "",
    sasl_username: str = "",
    sasl_password: str | None = None,
    peer_uri: str | None = None,
    migration_address: str | None = None,
    user=None,
) -> Host:
    """Edit a host. A changed URI or credentials are checked by connecting before they are saved.

    ``sasl_password=None`` keeps the stored password; "" clears it.
    """
    access.require(user, access.MANAGE, host, what="host.update")
    name = _clean_name(name, exclude_pk=host.pk)
    uri = _clean_uri(uri, exclude_pk=host.pk)
    ssh_key_path = _clean_key(ssh_key_path)
    peer_uri = host.peer_uri if peer_uri is None else _clean_peer_uri(peer_uri)
    migration_address = host.migration_address if migration_address is None else _clean_address(migration_address)
    sasl_username = (sasl_username or "").strip()
    password = host.sasl_password if sasl_password is None else sasl_password
    transport_changed = (uri, ssh_key_path, sasl_username, password) != (
        host.uri,
        host.ssh_key_path,
        host.sasl_username,
        host.sasl_password,
    )
    info = None
    if transport_changed:
        info = _probe(uri, Credentials(ssh_key_path=ssh_key_path, username=sasl_username, password=password))
    before = {
        f: getattr(host, f) for f in ("name", "uri", "ssh_key_path", "sasl_username", "peer_uri", "migration_address")
    }
    after = {"name": name, "uri": uri, "ssh_key_path": ssh_key_path, "sasl_username": sasl_username,
             "peer_uri": peer_uri, "migration_address": migration_address}  # fmt: skip
    changed = {f: {"from": before[f], "to": after[f]} for f in before if before[f] != after[f]}
    if password != host.sasl_password:
        changed["sasl_credential"] = "cleared" if not password else "changed"  # never the password
    with transaction.atomic():
        host.name, host.uri, host.ssh_key_path = name, uri, ssh_key_path
        host.sasl_username, host.sasl_password = sasl_username, password
        host.peer_uri, host.migration_address = peer_uri, migration_address
        if info:
            _apply_node_info(host, info)
            _set_state(host, HostState.CONNECTED, "")
        host.save()
        host_changed(host)
        if transport_changed:
            _request_sync(host)
        if changed:
            audit_record(
                action="host.update", user=user, target=host, message=f"changed {', '.join(changed)}", details=changed
            )
    if transport_changed:
        connections.manager().drop(host.pk)
    return host


SYNC_TASK = "hosts.tasks.host_sync_task"


def _request_sync(host: Host) -> None:
    """Have a worker read the host's inventory once the current transaction commits (a broker that
    is down is only logged: the listener resyncs the host when it takes it)."""
    enqueue_on_commit(SYNC_TASK, args=[host.pk], queue="inventory", quiet=True)


def host_sync_request(*, host: Host, user=None) -> None:
    """Ask for a resync of ``host`` now ("Sync now"); the result reaches browsers live."""
    access.require(user, access.MANAGE, host, what="host.sync")
    _request_sync(host)
    audit_record(action="host.sync", user=user, target=host, message="resync requested")


def host_ensure(*, name: str, uri: str, ssh_key_path: str = "", migration_address: str = "") -> tuple[Host, bool]:
    """Register a host idempotently (the lab's hosts): (host, created).

    A host already registered by that URI or name is kept (and pointed at the URI); otherwise it
    is added, even if it does not answer yet.
    """
    existing = Host.objects.filter(uri=uri).first() or Host.objects.filter(name=name).first()
    if existing is None:
        host = host_add(
            name=name,
            uri=uri,
            ssh_key_path=ssh_key_path,
            migration_address=migration_address,
            allow_offline=True,
            request_sync=False,
        )
        return host, True
    if (existing.uri, existing.ssh_key_path, existing.migration_address) != (uri, ssh_key_path, migration_address):
        try:
            host_update(
                host=existing,
                name=existing.name,
                uri=uri,
                ssh_key_path=ssh_key_path,
                sasl_username=existing.sasl_username,
                migration_address=migration_address,
            )
        except ServiceError as exc:
            log.warning("could not update host %s: %s", existing.name, exc.message)
    return existing, False


def host_remove(*, host: Host, user=None) -> None:
    """Stop managing a host: its inventory rows go with it (the VMs themselves are not touched)."""
    access.require(user, access.MANAGE, host, what="host.remove")
    busy = host.jobs.active().count()  # type: ignore[attr-defined]  (jobs.Job's reverse relation)
    if busy:
        message = f"Host {host.name} has {busy} job(s) in progress; wait for them or cancel them first."
        audit_refusal(user=user, action="host.remove", target=host, message=message)
        raise Conflict(message)
    host_id = host.pk
    with transaction.atomic():
        Host.objects.select_for_update().filter(pk=host_id).first()  # wait for a running sync of it
        forgotten = [family.forget(host) for family in families()]
        access.drop_object_permissions(Host, [host_id])
        audit_record(
            action="host.remove",
            user=user,
            target=host,
            host_ref=host_id,
            message=f"removed {host.uri} and its {', '.join(forgotten) or 'rows'} (the VMs were not touched)",
        )
        host.delete()
        host_removed(host_id)
    connections.manager().drop(host_id)
    log.info("host %s removed", host.name)


# --- reachability and sync -----------------------------------------------------------------------------
def _set_state(host: Host, state: str, error: str) -> bool:
    changed = host.state != state or host.last_error != error
    if host.state != state:
        host.state_changed = timezone.now()
    host.state = state
    host.last_error = error
    return changed


def host_mark_unreachable(*, host: Host, error: str) -> None:
    """Record that ``host`` cannot be reached (and why); browsers see it at once."""
    with transaction.atomic():
        host = Host.objects.select_for_update().get(pk=host.pk)
        if _set_state(host, HostState.UNREACHABLE, error):
            host.save(update_fields=["state", "last_error", "state_changed", "updated"])
            host_changed(host)
            log.warning("host %s unreachable: %s", host.name, error)


def host_sync(*, host: Host) -> SyncResult:
    """Read the node and every object of every inventory family of ``host`` (domains first), and
    make the rows match: one bulk read and one transaction per family."""
    started = timezone.now()
    counts = Counts()
    found: dict[str, int] = {}
    try:
        conn = connections.host_connection(host)
        info = conn.node_info()
        for family in families():
            family_counts = family.sync(host, conn)
            counts.add(family_counts)
            found[family.name] = family_counts.objects
    except VirtError as exc:
        host_mark_unreachable(host=host, error=str(exc))
        return SyncResult(host=host, ok=False, error=str(exc))
    now = timezone.now()
    with transaction.atomic():
        host = Host.objects.select_for_update().get(pk=host.pk)
        before = (host.state, host.free_memory_bytes, host.memory_bytes, host.last_error)
        _apply_node_info(host, info)
        _set_state(host, HostState.CONNECTED, "")
        host.last_seen = now
        host.last_sync = now
        host.save()
        # (the families announce the host themselves when its VM counts change)
        if before != (host.state, host.free_memory_bytes, host.memory_bytes, host.last_error):
            host_changed(host)
    return SyncResult(
        host=host,
        ok=True,
        created=counts.created,
        updated=counts.updated,
        moved=counts.moved,
        gone=counts.gone,
        domains=found.get("domains", 0),
        seconds=(now - started).total_seconds(),
    )


def host_sync_all() -> list[SyncResult]:
    """Resync every host (the periodic safety net and ``manage.py sync_hosts``)."""
    return [host_sync(host=host) for host in Host.objects.all()]
