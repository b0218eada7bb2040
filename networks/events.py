"""The live events of networks: a network changed or went away, its leases changed, a guest's
addresses changed (schemas and senders)."""

from __future__ import annotations

from typing import Literal

from django.db.models import F

from core.realtime import FLEET_GROUP, Audience, Event, Payload, audience, host_group, push_on_commit, vm_group

from .models import Network
from .serializers import network_data


class NetworkPayload(Payload):
    """A network as the API (networks.serializers.NetworkSerializer) and the network tables show it."""

    id: int
    host: int
    host_name: str
    name: str
    uuid: str
    active: bool
    persistent: bool
    autostart: bool
    mode: str
    mode_label: str
    forward_mode: str
    bridge: str
    forward_dev: str
    subnets: list[str]
    dhcp_ranges: list[str]
    dhcp_hosts: list[dict]
    version: int


class NetworkUpdated(Event):
    type: Literal["network.updated"] = "network.updated"
    network: NetworkPayload

    def audience(self) -> Audience:
        return audience(hosts=[self.network.host])


class NetworkRemoved(Event):
    type: Literal["network.removed"] = "network.removed"
    network_id: int
    host: int

    def audience(self) -> Audience:
        return audience(hosts=[self.host])


class LeasesChanged(Event):
    """dnsmasq handed out, renewed or dropped leases of a network: pages showing them (the network,
    the VMs with these MACs) fetch them again."""

    type: Literal["network.leases"] = "network.leases"
    network_id: int
    host: int
    macs: list[str]

    def audience(self) -> Audience:
        return audience(hosts=[self.host])


class GuestAddressesChanged(Event):
    """A guest's addresses from ARP or its agent changed: its page fetches them again."""

    type: Literal["vm.addresses"] = "vm.addresses"
    vm: str
    host: int

    def audience(self) -> Audience:
        return audience(vm=self.vm, hosts=[self.host])


def _groups(host_id: int) -> list[str]:
    return [FLEET_GROUP, host_group(host_id)]


def network_changed(network: Network) -> None:
    """A new version of ``network`` (saved), and network.updated once the transaction commits."""
    Network.objects.filter(pk=network.pk).update(version=F("version") + 1)
    network.version = Network.objects.values_list("version", flat=True).get(pk=network.pk)
    push_on_commit(_groups(network.host_id), NetworkUpdated(network=NetworkPayload(**network_data(network))))


def network_removed(network_id: int, host_id: int) -> None:
    push_on_commit(_groups(host_id), NetworkRemoved(network_id=network_id, host=host_id))


def leases_changed(network: Network, macs: list[str]) -> None:
    push_on_commit([host_group(network.host_id)],
                   LeasesChanged(network_id=network.pk, host=network.host_id, macs=macs))  # fmt: skip


def guest_addresses_changed(vm) -> None:
    push_on_commit([host_group(vm.host_id), vm_group(vm.uuid)], GuestAddressesChanged(vm=str(vm.uuid), host=vm.host_id))
