"""The live events of storage: pools and volumes changed or went away (schemas and senders)."""

from __future__ import annotations

from typing import Literal

from django.db.models import F

from core.realtime import FLEET_GROUP, Audience, Event, Payload, audience, host_group, push_on_commit

from .models import StoragePool, Volume
from .serializers import pool_data, volume_data


class PoolPayload(Payload):
    """A pool as the API (storage.serializers.PoolSerializer), the pool tables and this event show it."""

    id: int
    host: int
    host_name: str
    name: str
    uuid: str
    type: str
    state: str
    state_label: str
    persistent: bool
    autostart: bool
    capacity: int
    allocation: int
    available: int
    target_path: str
    source: str
    volume_count: int
    version: int


class VolumePayload(Payload):
    """A volume as the API (storage.serializers.VolumeSerializer) and the volume tables show it."""

    id: int
    pool: int
    pool_name: str
    host: int
    name: str
    path: str
    type: str
    format: str
    capacity: int
    allocation: int
    backing_path: str
    left_by: int | None
    version: int


class PoolUpdated(Event):
    type: Literal["pool.updated"] = "pool.updated"
    pool: PoolPayload

    def audience(self) -> Audience:
        return audience(hosts=[self.pool.host])


class PoolRemoved(Event):
    type: Literal["pool.removed"] = "pool.removed"
    pool_id: int
    host: int

    def audience(self) -> Audience:
        return audience(hosts=[self.host])


class VolumeUpdated(Event):
    type: Literal["volume.updated"] = "volume.updated"
    volume: VolumePayload

    def audience(self) -> Audience:
        return audience(hosts=[self.volume.host])


class VolumeRemoved(Event):
    type: Literal["volume.removed"] = "volume.removed"
    volume_id: int
    pool: int
    host: int

    def audience(self) -> Audience:
        return audience(hosts=[self.host])


def _groups(host_id: int) -> list[str]:
    return [FLEET_GROUP, host_group(host_id)]


def pool_changed(pool: StoragePool) -> None:
    """A new version of ``pool`` (saved), and pool.updated once the transaction commits."""
    StoragePool.objects.filter(pk=pool.pk).update(version=F("version") + 1)
    pool.version = StoragePool.objects.values_list("version", flat=True).get(pk=pool.pk)
    push_on_commit(_groups(pool.host_id), PoolUpdated(pool=PoolPayload(**pool_data(pool))))


def pool_removed(pool_id: int, host_id: int) -> None:
    push_on_commit(_groups(host_id), PoolRemoved(pool_id=pool_id, host=host_id))


def volume_changed(volume: Volume) -> None:
    Volume.objects.filter(pk=volume.pk).update(version=F("version") + 1)
    volume.version = Volume.objects.values_list("version", flat=True).get(pk=volume.pk)
    push_on_commit(_groups(volume.pool.host_id), VolumeUpdated(volume=VolumePayload(**volume_data(volume))))


def volume_removed(volume_id: int, pool: StoragePool) -> None:
    push_on_commit(_groups(pool.host_id), VolumeRemoved(volume_id=volume_id, pool=pool.pk, host=pool.host_id))
