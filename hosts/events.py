"""The live events of hosts: their schemas, and the one place that builds and sends them."""

from __future__ import annotations

from typing import Literal

from django.db.models import F

from core.realtime import FLEET_GROUP, Audience, Event, Payload, audience, host_group, push_on_commit

from .models import Host


class HostPayload(Payload):
    """A host as the API (hosts.serializers.HostSerializer), the hosts table and this event show it."""

    id: int
    name: str
    uri: str
    status: str
    state: str
    maintenance: str
    last_error: str
    last_seen: str | None
    last_sync: str | None
    state_changed: str
    hostname: str
    host_uuid: str
    arch: str
    cpu_model: str
    cpu_vendor: str
    cpus: int
    cpu_mhz: int
    memory_bytes: int
    free_memory_bytes: int
    hypervisor_type: str
    hypervisor_version: str
    libvirt_version: str
    sasl_username: str
    has_ssh_key: bool
    has_sasl_password: bool
    peer_uri: str
    migration_address: str
    vm_count: int | None = None
    running_count: int | None = None
    version: int


class HostUpdated(Event):
    type: Literal["host.updated"] = "host.updated"
    host: HostPayload

    def audience(self) -> Audience:
        return audience(hosts=[self.host.id])


class HostRemoved(Event):
    type: Literal["host.removed"] = "host.removed"
    host_id: int

    def audience(self) -> Audience:
        return audience(hosts=[self.host_id])


def host_payload(host: Host) -> HostPayload:
    """The host as browsers and the API see it, with its VM counts."""
    from .selectors import host_list
    from .serializers import HostSerializer

    if not hasattr(host, "vm_count"):
        host = host_list().get(pk=host.pk)
    return HostPayload(**HostSerializer(host).data)


def host_changed(host: Host) -> None:
    """Record that ``host`` changed as browsers see it: a new version, and ``host.updated`` on commit.

    The version is bumped in the database (atomic whoever else writes the row), so browsers can
    drop an older event that arrives after a newer one.
    """
    Host.objects.filter(pk=host.pk).update(version=F("version") + 1)
    host.version = Host.objects.values_list("version", flat=True).get(pk=host.pk)
    push_on_commit([FLEET_GROUP, host_group(host.pk)], HostUpdated(host=host_payload(host)))


def host_removed(host_id: int) -> None:
    push_on_commit([FLEET_GROUP, host_group(host_id)], HostRemoved(host_id=host_id))
