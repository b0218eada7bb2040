"""Read-only queries about storage (pages and API read the database only)."""

from __future__ import annotations

import django_filters
from django.db.models import Count, Q, QuerySet

from core.errors import NotFound
from core.filters import IdFilter, SearchFilter
from core.params import parse_id
from vms.models import VM

from .models import HostStorage, PoolState, StoragePool, Volume


class PoolFilterSet(django_filters.FilterSet):
    """The filters of the storage page (every pool of the fleet) and of its API."""

    q = SearchFilter(method="search", help_text="pool name, path or source contains")
    host = IdFilter(field_name="host_id")
    type = django_filters.CharFilter(field_name="type", max_length=32)
    state = django_filters.ChoiceFilter(choices=PoolState.choices)

    class Meta:
        model = StoragePool
        fields: list[str] = []

    def search(self, qs, name, value):
        return qs.filter(Q(name__icontains=value) | Q(target_path__icontains=value) | Q(source_host__icontains=value)
                         | Q(source_dir__icontains=value) | Q(source_name__icontains=value))  # fmt: skip


class VolumeFilterSet(django_filters.FilterSet):
    q = SearchFilter(method="search", help_text="name or path contains")
    pool = IdFilter(field_name="pool_id")
    host = IdFilter(field_name="pool__host_id")
    format = django_filters.CharFilter(field_name="format", max_length=32)

    class Meta:
        model = Volume
        fields: list[str] = []

    def search(self, qs, name, value):
        return qs.filter(Q(name__icontains=value) | Q(path__icontains=value))


def pool_list() -> QuerySet[StoragePool]:
    return StoragePool.objects.select_related("host").annotate(volume_count=Count("volumes")).defer("xml")


def pool_get(*, pool_id) -> StoragePool:
    pk = parse_id(pool_id)
    pool = pool_list().filter(pk=pk).first() if pk else None
    if pool is None:
        raise NotFound(f"There is no storage pool with id {str(pool_id)[:40]}.")
    return pool


def volume_get(*, volume_id) -> Volume:
    pk = parse_id(volume_id)
    volume = Volume.objects.select_related("pool", "pool__host").filter(pk=pk).first() if pk else None
    if volume is None:
        raise NotFound(f"There is no volume with id {str(volume_id)[:40]}.")
    return volume


def host_storage(host) -> HostStorage | None:
    return HostStorage.objects.filter(host=host).first()


def _uses(disk: dict, *, paths: set[str], pool_name: str, volume_names: set[str] | None) -> bool:
    if disk.get("path") and disk["path"] in paths:
        return True
    return bool(disk.get("pool") == pool_name and (volume_names is None or disk.get("volume") in volume_names))


def vms_using(*, pool: StoragePool | None = None, volume: Volume | None = None) -> list[VM]:
    """The VMs of the pool's host (present ones) with a disk on ``volume``, or on any volume of
    ``pool`` — by path, or by pool and volume name (VM.disks, from their domain XML)."""
    if volume is not None:
        pool = volume.pool
        paths, names = {volume.path}, {volume.name}
    else:
        assert pool is not None
        paths = set(pool.volumes.values_list("path", flat=True))
        names = None
    found = []
    for vm in VM.objects.filter(host_id=pool.host_id, gone_at__isnull=True).only("uuid", "name", "state", "disks"):
        if any(_uses(d, paths=paths, pool_name=pool.name, volume_names=names) for d in vm.disks or ()):
            found.append(vm)
    return found


def volume_users(volumes: list[Volume]) -> dict[int, list[VM]]:
    """For a page of volumes of one pool: which VMs use each (one query for the host's VMs)."""
    if not volumes:
        return {}
    pool = volumes[0].pool
    by_path = {v.path: v.pk for v in volumes}
    by_name = {v.name: v.pk for v in volumes}
    users: dict[int, list[VM]] = {v.pk: [] for v in volumes}
    for vm in VM.objects.filter(host_id=pool.host_id, gone_at__isnull=True).only("uuid", "name", "state", "disks"):
        seen = set()
        for disk in vm.disks or ():
            pk = by_path.get(disk.get("path", "")) or (
                by_name.get(disk.get("volume", "")) if disk.get("pool") == pool.name else None
            )
            if pk and pk not in seen:
                seen.add(pk)
                users[pk].append(vm)
    return users


def vm_disks(vm: VM) -> list[dict]:
    """The VM page's disks: each with its volume and pool when one of the host's pools has it."""
    disks = list(vm.disks or ())
    paths = [d["path"] for d in disks if d.get("path")]
    by_path = {
        v.path: v for v in Volume.objects.filter(pool__host_id=vm.host_id, path__in=paths).select_related("pool")
    }
    named = {(d.get("pool"), d.get("volume")) for d in disks if d.get("volume")}
    by_name = {}
    if named:
        query = Q()
        for pool_name, volume_name in named:
            query |= Q(pool__name=pool_name, name=volume_name)
        by_name = {
            (v.pool.name, v.name): v
            for v in Volume.objects.filter(query, pool__host_id=vm.host_id).select_related("pool")
        }
    return [{**d, "volume_row": by_path.get(d.get("path", "")) or by_name.get((d.get("pool"), d.get("volume")))}
            for d in disks]  # fmt: skip
