"""The one place that opens libvirt connections.

``open_connection`` validates the URI, checks the network path with a short timeout, opens the
connection through ``virConnectOpenAuth`` (SASL user/password, SSH key) with a time limit, and
turns on keepalive. ``ConnectionManager`` keeps one connection per host per process, drops it when
libvirt reports it closed, and reopens lazily on the next use.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from .console import ConsoleEndpoint, graphics_endpoint_from_xml
from .domains import (
    DiskInfo,
    DomainInfo,
    DomainStatus,
    HostInfo,
    PowerState,
    UndefineResult,
    domain_disks,
    domain_info_from_xml,
    host_info_from,
    power_state,
)
from .errors import AuthenticationFailed, DomainNotFound, HostUnreachable, OperationUnsupported, VirtError, translate
from .events import LIFECYCLE_EVENTS, OTHER_EVENTS, DomainEvent, ensure_event_loop, run_on_loop
from .uri import LibvirtURI, parse_uri

log = logging.getLogger(__name__)

CLOSE_REASONS = {
    libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "connection error",
    libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "libvirtd closed the connection",
    libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "no keepalive answer from libvirtd",
    libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "closed by Virtfleet",
}


@dataclass(frozen=True)
class Credentials:
    """Transport credentials of a host. Never logged, never part of repr."""

    ssh_key_path: str = ""
    username: str = ""
    password: str = ""

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return f"Credentials(ssh_key_path={self.ssh_key_path!r}, username={self.username!r}, password=***)"


def _effective_uri(parsed: LibvirtURI, credentials: Credentials) -> str:
    if parsed.is_ssh and credentials.ssh_key_path:
        return parsed.with_params(keyfile=credentials.ssh_key_path)
    return parsed.uri


def _auth(credentials: Credentials) -> list:
    def callback(creds, _opaque):
        for cred in creds:
            if cred[0] == libvirt.VIR_CRED_AUTHNAME:
                cred[4] = credentials.username or cred[3] or ""
            elif cred[0] == libvirt.VIR_CRED_PASSPHRASE:
                cred[4] = credentials.password
            else:
                return -1
        return 0

    return [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE], callback, None]


def _check_reachable(parsed: LibvirtURI, timeout: float) -> None:
    """Fail fast (instead of libvirt's minutes-long TCP timeout) when nothing answers on the port."""
    port = parsed.effective_port
    if not parsed.is_remote or port is None or "proxy" in parsed.params or "command" in parsed.params:
        return
    try:
        with socket.create_connection((parsed.host, port), timeout=timeout):
            pass
    except TimeoutError:
        raise HostUnreachable(
            f"no answer from {parsed.host}:{port} within {timeout:g} s",
            hint="check the address, the port and any firewall between Virtfleet and the host.",
        ) from None
    except OSError as exc:
        from .errors import hint_for

        message = f"cannot reach {parsed.host}:{port}: {exc.strerror or exc}"
        raise HostUnreachable(message, hint=hint_for(message)) from None


def open_connection(
    uri: str,
    credentials: Credentials | None = None,
    *,
    timeout: float = 8.0,
    keepalive: tuple[int, int] = (3, 2),
) -> HostConnection:
    """Open a libvirt connection to ``uri`` within ``timeout`` seconds or raise a VirtError."""
    ensure_event_loop()
    credentials = credentials or Credentials()
    parsed = parse_uri(uri)
    deadline = time.monotonic() + timeout
    _check_reachable(parsed, timeout)
    target = _effective_uri(parsed, credentials)
    outcome: dict = {}
    abandoned = threading.Event()

    def opener() -> None:
        try:
            conn = libvirt.openAuth(target, _auth(credentials), 0)
        except libvirt.libvirtError as exc:
            outcome["error"] = translate(exc)
            return
        if abandoned.is_set():  # the caller gave up on us: don't leak the connection
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
            return
        outcome["conn"] = conn

    thread = threading.Thread(target=opener, name=f"libvirt-open {parsed.host or parsed.driver}", daemon=True)
    thread.start()
    thread.join(max(0.1, deadline - time.monotonic()))
    if thread.is_alive():
        abandoned.set()
        raise HostUnreachable(
            f"libvirt at {uri} did not answer within {timeout:g} s",
            hint="the host may be overloaded, or an SSH connection may be waiting for a password or host key.",
        )
    if "error" in outcome:
        err = outcome["error"]
        if isinstance(err, AuthenticationFailed):
            raise err
        if not isinstance(err, HostUnreachable):
            # Anything failing while opening means we have no connection to that host.
            raise HostUnreachable(err.message, hint=err.hint, code=err.code)
        raise err
    conn = outcome["conn"]
    try:
        conn.setKeepAlive(*keepalive)
    except libvirt.libvirtError:
        pass  # local drivers (test://, qemu:///) have no keepalive; nothing to watch there
    return HostConnection(conn, uri)


_UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
    | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA,
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
    0,
)


class HostConnection:
    """A live connection to one host, with the reads and operations Virtfleet performs on it."""

    def __init__(self, conn: libvirt.virConnect, uri: str):
        self._conn = conn
        self.uri = uri
        self._closed = threading.Event()
        self._close_reason = ""
        self._close_handlers: list[Callable[[str], None]] = []
        self._event_ids: list[int] = []
        self._deregister: list[Callable[[], object]] = []
        self._done = False  # closed for good (close() ran)
        try:
            conn.registerCloseCallback(self._on_close, None)
        except libvirt.libvirtError:
            pass  # not supported by local drivers

    # --- connection state -----------------------------------------------------------------------
    def _on_close(self, _conn, reason, _opaque) -> None:
        self._close_reason = CLOSE_REASONS.get(reason, f"closed ({reason})")
        self._closed.set()
        for handler in list(self._close_handlers):
            try:
                handler(self._close_reason)
            except Exception:
                log.exception("close handler failed for %s", self.uri)

    @property
    def raw(self) -> libvirt.virConnect:
        """The libvirt connection itself, for virt's own modules (and tests that act behind
        Virtfleet's back); nothing outside virt/ calls libvirt."""
        return self._conn

    def on_close(self, handler: Callable[[str], None]) -> None:
        """Call ``handler(reason)`` (on the event-loop thread) when libvirt closes the connection."""
        self._close_handlers.append(handler)

    @property
    def close_reason(self) -> str:
        return self._close_reason

    def is_alive(self) -> bool:
        if self._closed.is_set():
            return False
        try:
            return bool(self._conn.isAlive())
        except libvirt.libvirtError:
            return False

    def close(self) -> None:
        """Close the connection (on the event-loop thread, see virt.events.run_on_loop)."""
        if not self._done:
            run_on_loop(self._close_now)

    def _close_now(self) -> None:
        if self._done:
            return
        self._done = True
        self.deregister_events()
        with contextlib.suppress(libvirt.libvirtError):
            self._conn.unregisterCloseCallback()
        self._closed.set()
        with contextlib.suppress(libvirt.libvirtError):
            self._conn.close()

    def _call(self, fn: Callable, *args, context: str = ""):
        try:
            return fn(*args)
        except libvirt.libvirtError as exc:
            raise translate(exc, context=context) from None

    # --- host ------------------------------------------------------------------------------------
    def node_info(self) -> HostInfo:
        c = self._conn
        return host_info_from(
            caps_xml=self._call(c.getCapabilities),
            info=self._call(c.getInfo),
            hostname=self._call(c.getHostname),
            free_memory=self._call(c.getFreeMemory),
            hv_type=self._call(c.getType),
            hv_version=self._call(c.getVersion),
            lib_version=self._call(c.getLibVersion),
        )

    # --- domains ---------------------------------------------------------------------------------
    def _uuids(self, flags: int) -> set[str]:
        return {d.UUIDString() for d in self._call(self._conn.listAllDomains, flags)}

    def list_domains(self) -> list[DomainInfo]:
        """Every domain on the host, read with as few round trips as libvirt allows.

        One listAllDomains, three flag-filtered lists (persistent, autostart, managed save) and
        one getAllDomainStats for state and reason; then one XMLDesc per domain, which is the
        only source of graphics, memory and vCPU configuration.
        """
        c = self._conn
        domains = self._call(c.listAllDomains, 0)
        if not domains:
            return []
        persistent = self._uuids(libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT)
        autostart = self._uuids(libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART)
        managed_save = self._uuids(libvirt.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE)
        states: dict[str, tuple[int, int]] = {}
        try:
            for dom, stats in c.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE, 0):
                states[dom.UUIDString()] = (stats.get("state.state", 0), stats.get("state.reason", 0))
        except libvirt.libvirtError as exc:
            err = translate(exc)
            if not isinstance(err, OperationUnsupported):
                raise err from None
        result = []
        for dom in domains:
            uuid = dom.UUIDString()
            try:
                state = states.get(uuid) or tuple(dom.state())
                xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
            except libvirt.libvirtError as exc:
                err = translate(exc)
                if isinstance(err, DomainNotFound):
                    continue  # undefined between the list and the read: it is gone
                raise err from None
            result.append(
                domain_info_from_xml(
                    xml,
                    state=state[0],
                    reason=state[1],
                    persistent=uuid in persistent,
                    autostart=uuid in autostart,
                    managed_save=uuid in managed_save,
                )
            )
        return result

    def _lookup(self, uuid: str) -> libvirt.virDomain:
        return self._call(self._conn.lookupByUUIDString, uuid, context=f"domain {uuid}")

    def domain_info(self, uuid: str) -> DomainInfo:
        """Re-read one domain (raises DomainNotFound when the host no longer has it)."""
        dom = self._lookup(uuid)
        try:
            state, reason = dom.state()
            return domain_info_from_xml(
                dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE),
                state=state,
                reason=reason,
                persistent=bool(dom.isPersistent()),
                autostart=bool(dom.autostart()) if dom.isPersistent() else False,
                managed_save=bool(dom.hasManagedSaveImage()) if dom.isPersistent() else False,
            )
        except libvirt.libvirtError as exc:
            raise translate(exc, context=f"domain {dom.name()}") from None

    def graphics_endpoint(self, uuid: str) -> ConsoleEndpoint:
        """Where the domain's VNC server listens now, with its password, from the live secure XML.

        The password is only for the console proxy's VNC authentication: never stored or logged.
        """
        dom = self._lookup(uuid)
        try:
            state, reason = dom.state()
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
        except libvirt.libvirtError as exc:
            raise translate(exc, context=f"read the console of {dom.name()}") from None
        return graphics_endpoint_from_xml(xml, state=power_state(state, reason)[0])

    # --- lifecycle operations --------------------------------------------------------------------
    def _on(self, uuid: str, what: str, call: Callable[[libvirt.virDomain], object]):
        dom = self._lookup(uuid)
        try:
            return call(dom)
        except libvirt.libvirtError as exc:
            raise translate(exc, context=f"{what} {dom.name()}") from None

    def power_state(self, uuid: str) -> tuple[PowerState, int, int]:
        """(PowerState, libvirt state, reason) of one domain: one cheap RPC."""
        state, reason = self._on(uuid, "read state of", lambda d: d.state())
        return power_state(state, reason)[0], state, reason

    def domain_status(self, uuid: str) -> DomainStatus:
        """What "done" is judged by: power state, saved state, autostart (no XML read)."""
        dom = self._lookup(uuid)
        try:
            state, reason = dom.state()
            persistent = bool(dom.isPersistent())
            return DomainStatus(
                state=power_state(state, reason)[0],
                persistent=persistent,
                managed_save=bool(dom.hasManagedSaveImage()) if persistent else False,
                autostart=bool(dom.autostart()) if persistent else False,
            )
        except libvirt.libvirtError as exc:
            raise translate(exc, context=f"domain {dom.name()}") from None

    def start(self, uuid: str, *, force_boot: bool = False) -> bool:
        """Start a defined domain; True when it resumed from its saved state (managed save)."""
        had_save = bool(self._on(uuid, "check saved state of", lambda d: d.hasManagedSaveImage()))
        flags = libvirt.VIR_DOMAIN_START_FORCE_BOOT if force_boot else 0
        self._on(uuid, "start", lambda d: d.createWithFlags(flags))
        return had_save and not force_boot

    def shutdown(self, uuid: str) -> None:
        """Ask the guest to power off (ACPI power button); returns at once."""
        self._on(uuid, "shut down", lambda d: d.shutdown())

    def destroy(self, uuid: str) -> None:
        """Power off at once (pull the plug)."""
        self._on(uuid, "force off", lambda d: d.destroy())

    def reboot(self, uuid: str) -> None:
        self._on(uuid, "reboot", lambda d: d.reboot(0))

    def reset(self, uuid: str) -> None:
        self._on(uuid, "reset", lambda d: d.reset(0))

    def suspend(self, uuid: str) -> None:
        self._on(uuid, "suspend", lambda d: d.suspend())

    def resume(self, uuid: str) -> None:
        self._on(uuid, "resume", lambda d: d.resume())

    def managed_save(self, uuid: str) -> None:
        """Save memory state to the host and stop; the next start restores it."""
        self._on(uuid, "save", lambda d: d.managedSave(0))

    def set_autostart(self, uuid: str, enabled: bool) -> None:
        self._on(uuid, "set autostart of", lambda d: d.setAutostart(1 if enabled else 0))

    def undefine(self, uuid: str, *, remove_storage: bool = False) -> UndefineResult:
        """Remove a (stopped) domain's definition, its saved state and snapshot metadata.

        With ``remove_storage`` its writable disk volumes are deleted too; disks that are not in a
        storage pool, CD-ROMs and shared or read-only disks are left in place and reported.
        """
        dom = self._lookup(uuid)
        name = dom.name()
        xml = self._on(uuid, "read", lambda d: d.XMLDesc(0))
        removed: list[str] = []
        kept: list[tuple[str, str]] = []
        volumes = []
        if remove_storage:
            for disk in domain_disks(xml):
                if not disk.removable:
                    kept.append((disk.label, disk.why_kept))
                    continue
                try:
                    volumes.append((disk.label, self._volume_of(disk)))
                except libvirt.libvirtError:
                    kept.append((disk.label, "not in any storage pool of the host; delete it by hand"))
        for flags in _UNDEFINE_FLAGS:
            try:
                dom.undefineFlags(flags)
                break
            except libvirt.libvirtError as exc:
                if "unsupported flags" in (exc.get_error_message() or "") and flags:
                    continue  # older or simpler drivers: retry with fewer cleanup flags
                raise translate(exc, context=f"delete {name}") from None
        for label, vol in volumes:
            try:
                vol.delete(0)
                removed.append(label)
            except libvirt.libvirtError as exc:
                kept.append((label, f"could not delete: {exc.get_error_message()}"))
        return UndefineResult(removed=tuple(removed), kept=tuple(kept))

    def _volume_of(self, disk: DiskInfo) -> libvirt.virStorageVol:
        if disk.pool and disk.volume:
            return self._conn.storagePoolLookupByName(disk.pool).storageVolLookupByName(disk.volume)
        return self._conn.storageVolLookupByPath(disk.path)

    # --- events ----------------------------------------------------------------------------------
    def register_events(self, callback: Callable[[DomainEvent], None]) -> None:
        """Deliver every domain event of the host to ``callback`` (called on the event-loop thread)."""

        def lifecycle(_conn, dom, event, detail, _opaque):
            callback(
                DomainEvent(
                    uuid=dom.UUIDString(),
                    name=dom.name(),
                    kind="lifecycle",
                    detail=LIFECYCLE_EVENTS.get(event, str(event)),
                    lifecycle=event,
                    lifecycle_detail=detail,
                )
            )

        def other(kind):
            def handler(_conn, dom, *_rest):
                callback(DomainEvent(uuid=dom.UUIDString(), name=dom.name(), kind=kind))

            return handler

        self._event_ids.append(
            self._call(self._conn.domainEventRegisterAny, None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle, None)
        )
        for event_id, kind in OTHER_EVENTS.items():
            try:
                self._event_ids.append(self._conn.domainEventRegisterAny(None, event_id, other(kind), None))
            except libvirt.libvirtError:
                log.debug("%s does not support %s events", self.uri, kind)

    def on_deregister(self, undo: Callable[[], object]) -> None:
        """Run ``undo`` when this connection's events are deregistered (other event families)."""
        self._deregister.append(undo)

    def deregister_events(self) -> None:
        for callback_id in self._event_ids:
            with contextlib.suppress(libvirt.libvirtError):
                self._conn.domainEventDeregisterAny(callback_id)
        self._event_ids.clear()
        for undo in self._deregister:
            with contextlib.suppress(libvirt.libvirtError):
                undo()
        self._deregister.clear()


class ConnectionManager:
    """One connection per host per process, reopened lazily after it was lost."""

    def __init__(self, *, timeout: float = 8.0, keepalive: tuple[int, int] = (3, 2)):
        self.timeout = timeout
        self.keepalive = keepalive
        self._conns: dict[object, HostConnection] = {}
        self._locks: dict[object, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, key: object) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def get(self, key: object, uri: str, credentials: Credentials | None = None) -> HostConnection:
        """The cached live connection for ``key``, or a newly opened one."""
        with self._lock(key):
            conn = self._conns.get(key)
            if conn is not None and conn.uri == uri and conn.is_alive():
                return conn
            if conn is not None:
                self._conns.pop(key, None)
                conn.close()
            conn = open_connection(uri, credentials, timeout=self.timeout, keepalive=self.keepalive)
            conn.on_close(self._forgetter(key, conn))
            self._conns[key] = conn
            return conn

    def _forgetter(self, key: object, conn: HostConnection) -> Callable[[str], None]:
        def forget(_reason: str) -> None:
            self._forget(key, conn)

        return forget

    def _forget(self, key: object, conn: HostConnection) -> None:
        with self._guard:
            if self._conns.get(key) is conn:
                del self._conns[key]

    def drop(self, key: object) -> None:
        """Close and forget the connection for ``key`` (e.g. after the host's URI changed)."""
        with self._lock(key):
            conn = self._conns.pop(key, None)
        if conn is not None:
            conn.close()

    def close_all(self) -> None:
        for key in list(self._conns):
            self.drop(key)


__all__ = ["ConnectionManager", "Credentials", "HostConnection", "VirtError", "open_connection"]
