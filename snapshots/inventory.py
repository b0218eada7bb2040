"""Snapshots as a family of the host inventory (hosts.inventory).

A full sync lists the host's domains that have snapshots (one call) and reads the snapshots of
each of them (one list per such domain, one XML read per snapshot); one query compares them with
the rows, and nothing is written when nothing changed. libvirt sends no event when a snapshot is
taken or deleted; a revert sends lifecycle events with a FROM_SNAPSHOT detail, which re-read that
VM's snapshots. Snapshot jobs re-read after themselves (their ``after``), whatever their end.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from hosts.inventory import Counts, Family, Hint, register_family
from hosts.models import Host
from virt import DomainNotFound, HostConnection
from virt import snapshots as vsnap
from vms.models import VM

from .events import snapshots_changed
from .models import Snapshot

log = logging.getLogger(__name__)
FIELDS = ("parent", "description", "state", "created", "memory", "memory_file", "disks", "current")


def _values(info: vsnap.SnapshotInfo) -> dict:
    return {
        "parent": info.parent,
        "description": info.description,
        "state": info.state[:16],
        "created": datetime.fromtimestamp(info.created, tz=UTC) if info.created else None,
        "memory": info.memory if info.memory in ("internal", "external") else "no",
        "memory_file": info.memory_file[:1024],
        "disks": [{"name": d.name, "mode": d.mode, "file": d.file} for d in info.disks],
        "current": info.current,
    }


def _same(row: Snapshot, values: dict) -> bool:
    return all(getattr(row, k) == v for k, v in values.items())


Sizes = dict[str, tuple[int, str]]  # {snapshot name: (bytes, size_kind)}


def _external_sizes(conn: HostConnection, infos: list[vsnap.SnapshotInfo]) -> Sizes:
    found: Sizes = {}
    for info in infos:
        if info.external:
            size = vsnap.external_size(conn, info)
            if size is not None:
                found[info.name] = (size, "files")
    return found


def reconcile_vm(vm: VM, infos: list[vsnap.SnapshotInfo], *, rows: list[Snapshot] | None = None,
                 sizes: Sizes | None = None) -> bool:  # fmt: skip
    """Make the snapshot rows of ``vm`` agree with ``infos`` (libvirt's list); whether anything
    changed (then vm.snapshots is pushed). Sizes measured when a snapshot was taken are kept."""
    if rows is None:
        rows = list(Snapshot.objects.filter(vm=vm))
    have = {r.name: r for r in rows}
    wanted = {i.name: _values(i) for i in infos}
    sizes = sizes or {}
    if (
        set(have) == set(wanted)
        and all(_same(have[n], v) for n, v in wanted.items())
        and all(n not in have or (have[n].size, have[n].size_kind) == s for n, s in sizes.items())
    ):
        return False
    now = timezone.now()
    with transaction.atomic():
        Snapshot.objects.filter(vm=vm).exclude(name__in=list(wanted)).delete()
        for name, values in wanted.items():
            row = have.get(name)
            size = sizes.get(name)
            extra = {"size": size[0], "size_kind": size[1]} if size is not None else {}
            if row is None:
                Snapshot.objects.create(vm=vm, name=name, read_at=now, **values, **extra)
            elif not _same(row, values) or (size is not None and (row.size, row.size_kind) != size):
                Snapshot.objects.filter(pk=row.pk).update(read_at=now, **values, **extra)
        current = next((n for n, v in wanted.items() if v["current"]), "")
        snapshots_changed(vm, count=len(wanted), current=current)
    return True


def snapshots_sync(host: Host, conn: HostConnection) -> Counts:
    """The snapshots of every domain of ``host``: one query when nothing changed."""
    reported = vsnap.host_snapshots(conn)
    rows: dict[str, list[Snapshot]] = {}
    for row in Snapshot.objects.filter(vm__host=host).annotate(vm_uuid=F("vm__uuid")):
        rows.setdefault(str(row.vm_uuid), []).append(row)  # type: ignore[attr-defined]
    counts = Counts(objects=sum(len(v) for v in reported.values()))
    touched = [u for u in set(rows) | set(reported) if _differs(rows.get(u, []), reported.get(u, []))]
    external = {u for u, infos in reported.items() if any(i.external for i in infos)}
    touched = sorted(set(touched) | external)
    if not touched:
        return counts
    vms = {str(vm.uuid): vm for vm in VM.objects.filter(host=host, uuid__in=touched)}
    for uuid in touched:
        vm = vms.get(uuid)
        if vm is None:
            continue  # not a VM row of this host (yet): the domains family makes it first
        infos = reported.get(uuid, [])
        if reconcile_vm(vm, infos, rows=rows.get(uuid, []), sizes=_external_sizes(conn, infos)):
            counts.updated += 1
    return counts


def _differs(rows: list[Snapshot], infos: list[vsnap.SnapshotInfo]) -> bool:
    have = {r.name: r for r in rows}
    return set(have) != {i.name for i in infos} or any(not _same(have[i.name], _values(i)) for i in infos)


def snapshots_reread(*, host: Host, uuid: str, conn: HostConnection, sizes: Sizes | None = None) -> None:
    """Re-read one VM's snapshots (after a job or a revert event); a domain gone: none. ``sizes``:
    what a job measured when it took one."""
    vm = VM.objects.filter(host=host, uuid=uuid).first()
    if vm is None:
        return
    try:
        infos = vsnap.list_snapshots(conn, uuid)
    except DomainNotFound:
        infos = []
    reconcile_vm(vm, infos, sizes={**_external_sizes(conn, infos), **(sizes or {})})


def _reread(host: Host, conn: HostConnection, hint: Hint) -> None:
    snapshots_reread(host=host, uuid=hint.key, conn=conn)


def _subscribe(conn: HostConnection, hint) -> None:
    vsnap.register_snapshot_events(conn, lambda uuid: hint(Hint(family="snapshots", key=uuid)))


def _forget(host: Host) -> str:
    deleted, _ = Snapshot.objects.filter(vm__host=host).delete()
    return f"{deleted} snapshot row(s)" if deleted else ""


def register() -> None:
    register_family(Family(name="snapshots", sync=snapshots_sync, reread=_reread, subscribe=_subscribe,
                           forget=_forget))  # fmt: skip
