"""Inventory services: make VM rows match what libvirt reports, and push what changed.

Domains are a family of the host inventory (hosts.inventory, registered here): host_sync reads a
host's full listing through ``domains_sync`` and the listener re-reads one domain after an event
through ``vm_reread``. A VM is keyed by UUID across the fleet; when two hosts report the same
UUID (during a migration, or a stale definition left behind) the copy with the higher
``placement_rank`` wins, checked against the other host's live state, so the row moves exactly
once and never flickers between hosts.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from dataclasses import asdict, dataclass, field
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core import access
from core.realtime import host_group
from hosts.connections import host_connection
from hosts.events import host_changed
from hosts.inventory import Counts, Family, Hint, register_family
from hosts.models import Host
from virt import DomainEvent, DomainInfo, DomainNotFound, HostConnection, VirtError, power_state
from virt.domains import is_incoming_migration

from .events import vm_changed
from .models import VM

log = logging.getLogger(__name__)

SYNCED_FIELDS = [
    "name", "state", "state_reason", "libvirt_state", "libvirt_reason", "vcpus", "max_vcpus",
    "memory_kib", "max_memory_kib", "persistent", "autostart", "managed_save", "arch",
    "graphics_type", "graphics_listen", "graphics_port", "graphics_socket", "graphics_password", "xml", "disks",
    "interfaces", "template",
]  # fmt: skip
WRITE_FIELDS = [*SYNCED_FIELDS, "pending", "host", "also_on", "gone_at", "last_seen", "state_changed", "version", "observed_at"]


def fields_from_info(info: DomainInfo) -> dict:
    """The VM columns that come straight from a DomainInfo."""
    vnc = next((g for g in info.graphics if g.type == "vnc"), None)
    graphics = vnc or (info.graphics[0] if info.graphics else None)
    return {
        "name": info.name,
        "state": str(info.state),
        "state_reason": info.state_reason,
        "libvirt_state": info.libvirt_state,
        "libvirt_reason": info.libvirt_reason,
        "vcpus": info.vcpus,
        "max_vcpus": info.max_vcpus,
        "memory_kib": info.memory_kib,
        "max_memory_kib": info.max_memory_kib,
        "persistent": info.persistent,
        "autostart": info.autostart,
        "managed_save": info.managed_save,
        "arch": info.arch,
        "graphics_type": graphics.type if graphics else "",
        "graphics_listen": graphics.listen if graphics else "",
        "graphics_port": graphics.port if graphics else None,
        "graphics_socket": graphics.socket if graphics else "",
        "graphics_password": graphics.has_password if graphics else False,
        "xml": info.xml,
        "disks": [asdict(disk) for disk in info.disks],
        "interfaces": [asdict(nic) for nic in info.interfaces],
        "template": info.template,
    }


def _row_rank(vm: VM) -> int:
    """placement_rank of the copy a row describes, from what was last stored."""
    if vm.gone_at is not None:
        return -1
    if is_incoming_migration(vm.libvirt_state, vm.libvirt_reason):
        return 0
    return 1 if vm.state in ("shutoff", "unknown") else 2


_UNKNOWN = object()  # the other host could not be asked


@dataclass
class ReconcileResult:
    created: int = 0
    updated: int = 0
    moved: int = 0
    gone: int = 0
    changed_uuids: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return self.created + self.updated + self.moved + self.gone


def _live_on(host: Host | None, uuid: str, connect) -> object:
    """What ``host`` reports about ``uuid`` right now: DomainInfo, None (not there) or _UNKNOWN."""
    if host is None:
        return None
    if not host.is_connected:
        return _UNKNOWN
    try:
        return connect(host).domain_info(uuid)
    except DomainNotFound:
        return None
    except VirtError as exc:
        log.info("could not ask %s about %s: %s", host, uuid, exc)
        return _UNKNOWN


def _default_connect(host: Host):
    return host_connection(host)


def vm_reread(*, host: Host, uuid: str, conn=None, state_only: bool = False) -> None:
    """Re-read one domain of ``host`` and make its row agree (after an event, a job, a migration).

    ``state_only``: only the power state changed (suspend/resume events), so one ``state()`` call
    is enough, unless the row is not simply a present VM of the host; then the domain is read in
    full. ``conn`` is the host's connection (default: this process's cached one). libvirt errors
    other than "no such domain" reach the caller.
    """
    conn = conn or _default_connect(host)
    if state_only:
        read_at = timezone.now()
        try:
            if vm_apply_state(host=host, uuid=uuid, state=conn.power_state(uuid), read_at=read_at):
                return
        except DomainNotFound:
            pass  # gone meanwhile: the full read below records it
    read_at = timezone.now()
    try:
        infos = [conn.domain_info(uuid)]
    except DomainNotFound:
        infos = []
    vm_reconcile(host=host, infos=infos, scope={uuid}, read_at=read_at)


def vm_reconcile(
    *,
    host: Host,
    infos: list[DomainInfo],
    read_at: datetime,
    scope: set[str] | None = None,
    connect=_default_connect,
) -> ReconcileResult:
    """Make VM rows agree with ``infos``, what ``host`` reported when asked at ``read_at``.

    ``scope=None`` means ``infos`` is the host's full listing: rows on this host that are missing
    from it are gone (or moved to the other host that also has them). With ``scope`` (a set of
    UUIDs that were re-read), only those UUIDs are considered.

    ``read_at`` is taken before the libvirt call. Rows already holding a later answer (an event's
    re-read that ran while this listing was in flight) are left as they are: an older answer
    never overwrites a newer one, whichever is written last.
    """
    reported = {info.uuid: info for info in infos}
    if scope is not None:
        reported = {u: i for u, i in reported.items() if u in scope}
        in_scope = Q(uuid__in=[uuidlib.UUID(u) for u in scope])
    else:
        in_scope = Q(host=host, gone_at__isnull=True) | Q(also_on=host)
    candidates = Q(uuid__in=[uuidlib.UUID(u) for u in reported]) | in_scope
    # Outside any transaction: the other hosts' live answers the decisions need.
    live = _ask_other_hosts(host, reported, candidates, connect)
    with transaction.atomic():
        # The host row first: a host removed meanwhile (host_remove locks it too) has no inventory.
        if not Host.objects.select_for_update().filter(pk=host.pk).exists():
            return ReconcileResult()
        plan = _Plan(host, read_at, live, VM.objects.select_for_update().filter(candidates).select_related("host"))
        for u, info in reported.items():
            plan.reported(u, info, rewrite_unchanged=scope is not None)
        for u, vm in plan.rows.items():
            if u not in reported:
                plan.missing(u, vm)
        return plan.write(full_listing=scope is None)


def _ask_other_hosts(host: Host, reported: dict, candidates: Q, connect) -> dict[str, object]:
    """Live answers of the other host of each row that needs one: a UUID this host reports that
    lives elsewhere, or one this host lost that another also reported."""
    live: dict[str, object] = {}
    for vm in VM.objects.filter(candidates).select_related("host", "also_on"):
        u = str(vm.uuid)
        if u in reported and vm.host_id != host.pk and vm.gone_at is None:
            live[u] = _live_on(vm.host, u, connect)
        elif u not in reported and vm.host_id == host.pk and vm.also_on_id and vm.also_on_id != host.pk:
            live[u] = _live_on(vm.also_on, u, connect)
    return live


class _Plan:
    """The changes one reconcile makes, decided row by row under the rows' locks, written at once."""

    def _announce_hosts(self) -> None:
        """The hosts whose VM counts changed (a VM came, went, moved, or started or stopped running)
        show the new counts: one host.updated per host, whatever the number of VMs."""
        hosts = {self.host.pk} if self.to_create else set()
        for u in self.visible:
            vm, before = self.to_write[u], self.original[u]
            if before["host_id"] != vm.host_id:
                hosts |= {before["host_id"], vm.host_id}
            elif (before["gone_at"] is None) != (vm.gone_at is None) or (before["state"] == "running") != (
                vm.state == "running"
            ):
                hosts.add(vm.host_id)
        for host_id in hosts:
            host_changed(self.host if host_id == self.host.pk else Host(pk=host_id))

    def __init__(self, host: Host, read_at: datetime, live: dict[str, object], locked):
        self.host, self.read_at, self.live = host, read_at, live
        self.rows: dict[str, VM] = {}
        self.newer: set[str] = set()  # rows left alone: someone already wrote a later answer
        for vm in locked:
            if vm.observed_at is not None and vm.observed_at > read_at:
                self.newer.add(str(vm.uuid))
            else:
                self.rows[str(vm.uuid)] = vm
        self.original = {u: _values(vm) for u, vm in self.rows.items()}
        self.to_create: list[VM] = []
        self.to_write: dict[str, VM] = {}  # rows to save
        self.visible: set[str] = set()  # rows whose change browsers must see
        self.moved_from: dict[str, int] = {}

    def _save(self, vm: VM, *, shown: bool) -> None:
        self.to_write[str(vm.uuid)] = vm
        if shown:
            self.visible.add(str(vm.uuid))

    def reported(self, u: str, info: DomainInfo, *, rewrite_unchanged: bool) -> None:
        """The host reports domain ``u``: create, update or move its row (or note a second copy)."""
        host, read_at = self.host, self.read_at
        vm = self.rows.get(u)
        if vm is None:
            if u not in self.newer:
                self.to_create.append(VM(uuid=uuidlib.UUID(u), host=host, first_seen=read_at, last_seen=read_at,
                                         observed_at=read_at, **fields_from_info(info)))  # fmt: skip
            return
        if vm.host_id != host.pk and vm.gone_at is None and not _claims(info, self.live.get(u, _UNKNOWN), vm):
            if vm.also_on_id != host.pk:  # remember the second copy; the VM stays where it is
                vm.also_on = host
                self._save(vm, shown=False)
            return
        shown = _apply(vm, fields_from_info(info), read_at)
        if vm.host_id != host.pk:
            self.moved_from[u] = vm.host_id
            vm.host = host
            shown = True
        if vm.gone_at is not None:
            vm.gone_at = None
            shown = True
        if vm.also_on_id == host.pk:
            vm.also_on = None
            self._save(vm, shown=False)
        if shown:
            vm.last_seen = read_at
        if shown or rewrite_unchanged:  # a full listing records unchanged rows in one statement
            vm.observed_at = read_at
            self._save(vm, shown=shown)

    def missing(self, u: str, vm: VM) -> None:
        """The host no longer reports ``u``: gone, or moved to the other host that still has it."""
        if vm.host_id != self.host.pk:
            if vm.also_on_id == self.host.pk:  # the second copy went away; nothing visible changes
                vm.also_on = None
                self._save(vm, shown=False)
            return
        if vm.gone_at is not None:
            return
        other = self.live.get(u)
        if isinstance(other, DomainInfo):  # lost here, but the other host that had it still does
            _apply(vm, fields_from_info(other), self.read_at)
            self.moved_from[u] = self.host.pk
            vm.host_id = vm.also_on_id
        else:
            vm.gone_at = self.read_at
        vm.also_on = None
        vm.observed_at = self.read_at
        self._save(vm, shown=True)

    def write(self, *, full_listing: bool) -> ReconcileResult:
        for u in self.visible:
            self.to_write[u].version += 1
        if self.to_create:
            VM.objects.bulk_create(self.to_create, batch_size=500)
        _save_changes(self.to_write, self.original)
        if full_listing:
            # One statement instead of a write per unchanged row.
            VM.objects.filter(host=self.host, gone_at__isnull=True).filter(
                Q(observed_at__isnull=True) | Q(observed_at__lt=self.read_at)
            ).update(last_seen=self.read_at, observed_at=self.read_at)
        self._announce_hosts()
        result = ReconcileResult(created=len(self.to_create), moved=len(self.moved_from))
        result.gone = sum(1 for u in self.visible if self.to_write[u].gone_at is not None)
        result.updated = len(self.visible) - result.moved - result.gone
        for vm in [*self.to_create, *(self.to_write[u] for u in self.visible)]:
            u = str(vm.uuid)
            vm_changed(vm, extra_groups=[host_group(self.moved_from[u])] if u in self.moved_from else [])
            result.changed_uuids.append(u)
        return result


_ATTNAMES = {name: VM._meta.get_field(name).attname for name in WRITE_FIELDS}


def _values(vm: VM) -> dict:
    return {attname: getattr(vm, attname) for attname in _ATTNAMES.values()}


def _save_changes(rows: dict[str, VM], original: dict[str, dict]) -> None:
    """Write only the columns that changed: one small UPDATE per row when few rows changed (the
    listener's case, one VM per event), one bulk UPDATE over the changed columns otherwise."""
    changes = []
    for u, vm in rows.items():
        now = _values(vm)
        changed = {a: v for a, v in now.items() if v != original[u][a]}
        if changed:
            changes.append((vm, changed))
    if not changes:
        return
    if len(changes) <= 20:
        for vm, changed in changes:
            VM.objects.filter(pk=vm.pk).update(**changed)
        return
    columns = sorted({name for name, a in _ATTNAMES.items() for _vm, changed in changes if a in changed})
    VM.objects.bulk_update([vm for vm, _ in changes], columns, batch_size=500)


def vm_apply_state(*, host: Host, uuid: str, state: tuple, read_at: datetime) -> bool:
    """Record a VM's new power state, re-read alone after a state-only event (suspend/resume).

    ``state`` is (PowerState, libvirt state, reason) from virt, read at ``read_at``. Returns False
    when the row is not simply a present VM of ``host`` (new, moved, gone...): the caller then
    re-reads it fully. A row holding a later answer is left alone (and True returned).
    """
    power, libvirt_state, reason = state
    reason_text = power_state(libvirt_state, reason)[1]
    with transaction.atomic():
        vm = (
            VM.objects.select_for_update()
            .select_related("host")
            .filter(uuid=uuid, host=host, gone_at__isnull=True)
            .first()
        )
        if vm is None or vm.also_on_id is not None:
            return False
        if vm.observed_at is not None and vm.observed_at > read_at:
            return True  # a later answer is already there
        if (vm.libvirt_state, vm.libvirt_reason) == (libvirt_state, reason):
            # Nothing changed (an earlier event already brought it here); only remember when it
            # was confirmed, so an older listing written after this cannot change it back.
            VM.objects.filter(pk=vm.pk).update(observed_at=read_at)
            return True
        changed = {
            "state": str(power),
            "state_reason": reason_text,
            "libvirt_state": libvirt_state,
            "libvirt_reason": reason,
            "last_seen": read_at,
            "observed_at": read_at,
            "version": vm.version + 1,
        }
        if vm.state != str(power):
            changed["state_changed"] = read_at
        was_running = vm.state == "running"
        VM.objects.filter(pk=vm.pk).update(**changed)
        for name, value in changed.items():
            setattr(vm, name, value)
        vm_changed(vm)
        if was_running != (vm.state == "running"):
            host_changed(host)  # its running count changed
    return True


def _claims(info: DomainInfo, other: object, vm: VM) -> bool:
    """Does the copy described by ``info`` take the VM from its current host?

    ``other`` is what the current host said when asked just now (DomainInfo, None when it no
    longer has the domain, or _UNKNOWN when it could not be asked: then its stored row decides).
    """
    if other is None:
        return True
    current_rank = other.placement_rank if isinstance(other, DomainInfo) else _row_rank(vm)
    return info.placement_rank > current_rank


def _apply(vm: VM, values: dict, now: datetime) -> bool:
    """Copy ``values`` onto ``vm``; True when anything changed."""
    changed = False
    for name, value in values.items():
        if getattr(vm, name) != value:
            if name == "state":
                vm.state_changed = now
            setattr(vm, name, value)
            changed = True
    if vm.pending and vm.state in ("shutoff", "unknown"):  # stopped: its definition is what it boots with
        vm.pending = []
        changed = True
    return changed


# --- domains as a family of the host inventory --------------------------------------------------------------
# Lifecycle events that change only the power state: one state read is enough to follow them.
STATE_ONLY = {"suspended", "resumed"}


def domains_sync(host: Host, conn: HostConnection) -> Counts:
    """Every domain of ``host`` in one bulk read, and the rows made to agree (one transaction)."""
    read_at = timezone.now()
    domains = conn.list_domains()
    result = vm_reconcile(host=host, infos=domains, read_at=read_at)
    return Counts(created=result.created, updated=result.updated, moved=result.moved, gone=result.gone,
                  objects=len(domains))  # fmt: skip


def _domain_hints(conn: HostConnection, hint) -> None:
    def on_event(event: DomainEvent) -> None:
        full = not (event.kind == "lifecycle" and event.detail in STATE_ONLY)
        hint(Hint(family="domains", key=event.uuid, full=full))

    conn.register_events(on_event)


def _domains_reread(host: Host, conn: HostConnection, hint: Hint) -> None:
    vm_reread(host=host, uuid=hint.key, conn=conn, state_only=not hint.full)


def forget_host_vms(host: Host) -> str:
    """The host is being removed: its VM rows go (their object permissions first: ids get reused)."""
    rows = VM.objects.filter(host=host)
    count = rows.count()
    VM.objects.filter(also_on=host).update(also_on=None)
    access.drop_object_permissions(VM, rows.values_list("pk", flat=True))
    rows.delete()
    return f"{count} VM row(s)"


def register() -> None:
    register_family(Family(name="domains", sync=domains_sync, reread=_domains_reread, subscribe=_domain_hints,
                           forget=forget_host_vms))  # fmt: skip
