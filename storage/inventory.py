"""Storage pools and their volumes as a family of the host inventory (hosts.inventory).

A full sync reads every pool of a host and the volumes of every active one; a pool event
(lifecycle, refresh) re-reads that pool and its volumes. Rows follow what libvirt says: a pool or
volume the host no longer reports loses its row; an inactive pool lists no volumes (libvirt cannot
see them), so its volume rows go until it starts again. An older answer never overwrites a newer
one (``observed_at``), whichever is written last.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from hosts.inventory import Counts, Family, Hint, apply_fields, register_family
from hosts.models import Host
from jobs.engine import job_remark
from virt import HostConnection, NotFound, PoolNotFound, VirtError
from virt import storage as vs

from .events import pool_changed, pool_removed, volume_changed, volume_removed
from .models import HostStorage, StoragePool, Volume
from .selectors import vms_using

log = logging.getLogger(__name__)


def pool_fields(info: vs.PoolInfo) -> dict:
    return {
        "uuid": info.uuid,
        "type": info.type,
        "state": info.state
        if info.state in {c for c, _ in StoragePool._meta.get_field("state").choices}
        else "unknown",
        "persistent": info.persistent,
        "autostart": info.autostart,
        "capacity": info.capacity,
        "allocation": info.allocation,
        "available": info.available,
        "target_path": info.target_path,
        "source_host": info.source.host,
        "source_dir": info.source.dir,
        "source_device": info.source.device,
        "source_name": info.source.name,
        "source_format": info.source.format,
        "xml": info.xml,
    }


def volume_fields(info: vs.VolumeInfo) -> dict:
    return {
        "key": info.key,
        "path": info.path,
        "type": info.type,
        "format": info.format,
        "capacity": info.capacity,
        "allocation": info.allocation,
        "physical": info.physical,
        "backing_path": info.backing_path,
        "backing_format": info.backing_format,
    }


def _unchanged(
    host: Host,
    pools: list[vs.PoolInfo],
    volumes: dict[str, list[vs.VolumeInfo]],
    read_at: datetime,
    scope: set[str] | None,
) -> bool:
    """The common case of a periodic resync — nothing changed — in two reads and no lock: the rows
    only learn the time of this answer. Any difference, and the locked reconcile below runs."""
    rows = StoragePool.objects.filter(host=host)
    if scope is not None:
        rows = rows.filter(name__in=scope)
    existing = {row.name: row for row in rows}
    if set(existing) != {p.name for p in pools}:
        return False
    if not existing:
        return True
    by_pool: dict[int, dict[str, Volume]] = {row.pk: {} for row in existing.values()}
    for volume in Volume.objects.filter(pool__in=list(by_pool)):
        by_pool[volume.pool_id][volume.name] = volume
    for info in pools:
        row = existing[info.name]
        if row.observed_at > read_at:
            return False  # let the full path skip it the usual way
        if any(getattr(row, k) != v for k, v in pool_fields(info).items()):
            return False
        have, reported = by_pool[row.pk], volumes.get(info.name, [])
        if set(have) != {v.name for v in reported}:
            return False
        for v in reported:
            if any(getattr(have[v.name], k) != value for k, value in volume_fields(v).items()):
                return False
    StoragePool.objects.filter(pk__in=list(by_pool), observed_at__lt=read_at).update(observed_at=read_at)
    if any(by_pool.values()):
        Volume.objects.filter(pool__in=list(by_pool), observed_at__lt=read_at).update(observed_at=read_at)
    return True


def reconcile_pools(*, host: Host, pools: list[vs.PoolInfo], volumes: dict[str, list[vs.VolumeInfo]],
                    read_at: datetime, scope: set[str] | None = None) -> Counts:  # fmt: skip
    """Make the pool and volume rows of ``host`` agree with what it reported at ``read_at``.

    ``volumes`` holds the volumes of each active pool; ``scope``: only these pool names were read
    (after an event), otherwise ``pools`` is the host's full listing."""
    counts = Counts(objects=len(pools))
    if _unchanged(host, pools, volumes, read_at, scope):
        return counts
    with transaction.atomic():
        if not Host.objects.select_for_update().filter(pk=host.pk).exists():
            return counts  # removed meanwhile
        rows = StoragePool.objects.select_for_update().filter(host=host)
        if scope is not None:
            rows = rows.filter(name__in=scope)
        existing = {row.name: row for row in rows}
        for info in pools:
            row = existing.pop(info.name, None)
            if row is not None and row.observed_at > read_at:
                continue  # a later answer is already there
            created = row is None
            if created:
                row = StoragePool(host=host, name=info.name)
            changed = apply_fields(row, pool_fields(info)) or created
            row.observed_at = read_at
            if changed:
                row.save()
            else:
                StoragePool.objects.filter(pk=row.pk).update(observed_at=read_at)
            volume_counts = _reconcile_volumes(row, volumes.get(info.name, []), read_at)
            if changed or volume_counts.created or volume_counts.gone:  # its volume count shows too
                pool_changed(row)
                counts.created += created
                counts.updated += not created
            counts.add(volume_counts)
        for row in existing.values():
            if row.observed_at <= read_at:
                pool_removed(row.pk, host.pk)
                row.delete()
                counts.gone += 1
    return counts


def _reconcile_volumes(pool: StoragePool, reported: list[vs.VolumeInfo], read_at: datetime) -> Counts:
    counts = Counts()
    existing = {v.name: v for v in Volume.objects.select_for_update().filter(pool=pool)}
    for info in reported:
        row = existing.pop(info.name, None)
        if row is not None and row.observed_at > read_at:
            continue
        created = row is None
        if created:
            row = Volume(pool=pool, name=info.name)
        if apply_fields(row, volume_fields(info)) or created:
            row.observed_at = read_at
            row.save()
            volume_changed(row)
            counts.created += created
            counts.updated += not created
    for row in existing.values():
        if row.observed_at <= read_at:
            volume_removed(row.pk, pool)
            row.delete()
            counts.gone += 1
    return counts


def _volumes_of(conn: HostConnection, pools: list[vs.PoolInfo]) -> dict[str, list[vs.VolumeInfo]]:
    found = {}
    for info in pools:
        if info.state != "active":
            continue
        try:
            found[info.name] = vs.list_volumes(conn, info.name)
        except PoolNotFound:
            found[info.name] = []  # undefined while we listed: the next event says so
    return found


def pools_sync(host: Host, conn: HostConnection) -> Counts:
    """Every pool of ``host`` and the volumes of the active ones, and the rows made to agree; and
    the pool types the host supports."""
    caps = vs.pool_capabilities(conn)
    values = {
        "pool_types": list(caps.supported), "unsupported_types": list(caps.unsupported),
        "volume_formats": {k: list(v) for k, v in caps.volume_formats.items()}, "reported": caps.reported,
    }  # fmt: skip
    known = HostStorage.objects.filter(host=host).first()
    if known is None:
        HostStorage.objects.get_or_create(host=host, defaults=values)
    elif apply_fields(known, values):
        known.save()
    read_at = timezone.now()
    pools = vs.list_pools(conn)
    counts = reconcile_pools(host=host, pools=pools, volumes=_volumes_of(conn, pools), read_at=read_at)
    remove_left_behind(host, conn)
    return counts


def remove_left_behind(host: Host, conn: HostConnection) -> None:
    """Remove the partial volumes failed jobs left on ``host`` while it did not answer (marked by
    storage.kinds.mark_left_behind), now that it answers — unless a VM has started using one."""
    for volume in Volume.objects.filter(pool__host=host, left_by__isnull=False).select_related("pool", "left_by"):
        job = volume.left_by
        if vms_using(volume=volume):
            Volume.objects.filter(pk=volume.pk).update(left_by=None)
            job_remark(job, f"the partial volume {volume.name} is kept: a VM uses it now")
            continue
        try:
            vs.volume_delete(conn, volume.pool.name, volume.name)
        except NotFound:
            pass  # gone already (with its pool, or by hand)
        except VirtError as exc:  # try again at the next sync
            log.warning("%s: the partial volume %s is still there: %s", host.name, volume.name, exc)
            continue
        log.info("%s: removed the partial volume %s left by job %s", host.name, volume.name, job.pk)
        job_remark(job, f"removed the partial volume {volume.name} once {host.name} answered again")
        volume_removed(volume.pk, volume.pool)
        volume.delete()


def pool_reread(*, host: Host, name: str, conn: HostConnection) -> None:
    """Re-read one pool and its volumes (after an event or a job); gone from the host: gone here."""
    read_at = timezone.now()
    try:
        pools = [vs.pool_info(conn, name)]
    except PoolNotFound:
        pools = []
    reconcile_pools(host=host, pools=pools, volumes=_volumes_of(conn, pools), read_at=read_at, scope={name})


def _pool_hints(conn: HostConnection, hint) -> None:
    vs.register_pool_events(conn, lambda event: hint(Hint(family="pools", key=event.name)))


def _reread(host: Host, conn: HostConnection, hint: Hint) -> None:
    pool_reread(host=host, name=hint.key, conn=conn)


def forget_host_pools(host: Host) -> str:
    rows = StoragePool.objects.filter(host=host)
    count = rows.count()
    rows.delete()
    return f"{count} storage pool row(s)"


def register() -> None:
    register_family(Family(name="pools", sync=pools_sync, reread=_reread, subscribe=_pool_hints,
                           forget=forget_host_pools))  # fmt: skip
