"""Inventory services: make VM rows match what libvirt reports, and push what changed.

Used by ``hosts.services.host_sync`` (a host's full listing) and by the listener (one domain
re-read after an event). A VM is keyed by UUID across the fleet; when two hosts report the same
UUID (during a migration, or a stale definition left behind) the copy with the higher
``placement_rank`` wins, checked against the other host's live state, so the row moves exactly
once and never flickers between hosts.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.realtime import FLEET_GROUP, host_group, push_on_commit, vm_group
from hosts.models import Host
from virt import DomainInfo, DomainNotFound, VirtError
from virt.domains import is_incoming_migration

from .models import VM

log = logging.getLogger(__name__)

SYNCED_FIELDS = [
    "name", "state", "state_reason", "libvirt_state", "libvirt_reason", "vcpus", "max_vcpus",
    "memory_kib", "max_memory_kib", "persistent", "autostart", "managed_save", "arch",
    "graphics_type", "graphics_listen", "graphics_port", "graphics_socket", "graphics_password", "xml",
]  # fmt: skip
WRITE_FIELDS = [*SYNCED_FIELDS, "host", "also_on", "gone_at", "last_seen", "state_changed", "version", "observed_at"]


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
    from hosts.connections import host_connection

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

    # Phase 1, outside any transaction: find rows that need another host's live answer (a UUID
    # this host reports that lives elsewhere, or one this host lost that another also reported).
    snapshot = {str(vm.uuid): vm for vm in VM.objects.filter(candidates).select_related("host", "also_on")}
    live: dict[str, object] = {}
    for u, vm in snapshot.items():
        if u in reported and vm.host_id != host.pk and vm.gone_at is None:
            live[u] = _live_on(vm.host, u, connect)
        elif u not in reported and vm.host_id == host.pk and vm.also_on_id and vm.also_on_id != host.pk:
            live[u] = _live_on(vm.also_on, u, connect)

    result = ReconcileResult()
    with transaction.atomic():
        # The host row first: a host removed meanwhile (host_remove locks it too) has no inventory.
        if not Host.objects.select_for_update().filter(pk=host.pk).exists():
            return result
        locked = VM.objects.select_for_update().filter(candidates).select_related("host")
        rows, newer = {}, set()  # newer: rows left alone, someone already wrote a later answer
        for vm in locked:
            if vm.observed_at is not None and vm.observed_at > read_at:
                newer.add(str(vm.uuid))
            else:
                rows[str(vm.uuid)] = vm
        original = {u: _values(vm) for u, vm in rows.items()}
        to_create: list[VM] = []
        to_write: dict[str, VM] = {}  # rows to save
        visible: set[str] = set()  # rows whose change browsers must see
        moved_from: dict[str, int] = {}

        def write(vm: VM, *, shown: bool) -> None:
            to_write[str(vm.uuid)] = vm
            if shown:
                visible.add(str(vm.uuid))

        for u, info in reported.items():
            vm = rows.get(u)
            if vm is None:
                if u not in newer:
                    to_create.append(
                        VM(uuid=uuidlib.UUID(u), host=host, first_seen=read_at, last_seen=read_at, observed_at=read_at,
                           **fields_from_info(info))
                    )  # fmt: skip
                continue
            if vm.host_id != host.pk and vm.gone_at is None and not _claims(info, live.get(u, _UNKNOWN), vm):
                if vm.also_on_id != host.pk:  # remember the second copy; the VM stays where it is
                    vm.also_on = host
                    write(vm, shown=False)
                continue
            shown = _apply(vm, fields_from_info(info), read_at)
            if vm.host_id != host.pk:
                moved_from[u] = vm.host_id
                vm.host = host
                shown = True
            if vm.gone_at is not None:
                vm.gone_at = None
                shown = True
            if vm.also_on_id == host.pk:
                vm.also_on = None
                write(vm, shown=False)
            if shown:
                vm.last_seen = read_at
            if shown or scope is not None:  # a full listing records unchanged rows in one statement
                vm.observed_at = read_at
                write(vm, shown=shown)

        for u, vm in rows.items():
            if u in reported:
                continue
            if vm.host_id != host.pk:
                if vm.also_on_id == host.pk:  # the second copy went away; nothing visible changes
                    vm.also_on = None
                    write(vm, shown=False)
                continue
            if vm.gone_at is not None:
                continue
            other = live.get(u)
            if isinstance(other, DomainInfo):  # lost here, but the other host that had it still does
                _apply(vm, fields_from_info(other), read_at)
                moved_from[u] = host.pk
                vm.host_id = vm.also_on_id
            else:
                vm.gone_at = read_at
            vm.also_on = None
            vm.observed_at = read_at
            write(vm, shown=True)

        for u in visible:
            to_write[u].version += 1
        if to_create:
            VM.objects.bulk_create(to_create, batch_size=500)
        _save_changes(to_write, original)
        if scope is None:
            # One statement instead of a write per unchanged row.
            VM.objects.filter(host=host, gone_at__isnull=True).filter(
                Q(observed_at__isnull=True) | Q(observed_at__lt=read_at)
            ).update(last_seen=read_at, observed_at=read_at)

        result.created = len(to_create)
        result.moved = len(moved_from)
        result.gone = sum(1 for u in visible if to_write[u].gone_at is not None)
        result.updated = len(visible) - result.moved - result.gone
        for vm in [*to_create, *(to_write[u] for u in visible)]:
            extra = [host_group(moved_from[str(vm.uuid)])] if str(vm.uuid) in moved_from else []
            _push_vm(vm, extra_groups=extra)
            result.changed_uuids.append(str(vm.uuid))
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
    from virt import power_state as map_state

    power, libvirt_state, reason = state
    reason_text = map_state(libvirt_state, reason)[1]
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
        VM.objects.filter(pk=vm.pk).update(**changed)
        for name, value in changed.items():
            setattr(vm, name, value)
        _push_vm(vm)
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
    return changed


def _push_vm(vm: VM, *, extra_groups: list[str] = ()) -> None:
    from .serializers import vm_payload

    push_on_commit(
        [FLEET_GROUP, host_group(vm.host_id), vm_group(vm.uuid), *extra_groups],
        {"type": "vm.updated", "vm": vm_payload(vm)},
    )
