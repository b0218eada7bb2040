"""Read-only queries about networks (pages and API read the database only)."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from core.errors import NotFound
from core.filters import IdFilter, SearchFilter
from core.params import parse_id
from vms.models import VM

from .models import MODE_CHOICES, GuestAddress, Lease, Network


class NetworkFilterSet(django_filters.FilterSet):
    """The filters of the networks page (every network of the fleet) and of its API."""

    q = SearchFilter(method="search", help_text="network name or bridge contains")
    host = IdFilter(field_name="host_id")
    mode = django_filters.ChoiceFilter(choices=MODE_CHOICES)
    state = django_filters.ChoiceFilter(choices=[("active", "Active"), ("inactive", "Inactive")], method="by_state")

    class Meta:
        model = Network
        fields: list[str] = []

    def search(self, qs, name, value):
        return qs.filter(Q(name__icontains=value) | Q(bridge__icontains=value) | Q(forward_dev__icontains=value))

    def by_state(self, qs, name, value):
        return qs.filter(active=value == "active")


def network_list() -> QuerySet[Network]:
    return Network.objects.select_related("host").defer("xml")


def network_get(*, network_id) -> Network:
    pk = parse_id(network_id)
    network = Network.objects.select_related("host").filter(pk=pk).first() if pk else None
    if network is None:
        raise NotFound(f"There is no network with id {str(network_id)[:40]}.")
    return network


def _on(nic: dict, network: Network) -> bool:
    if nic.get("type") == "network":
        return nic.get("network") == network.name
    return bool(network.mode == "bridge" and nic.get("type") == "bridge" and nic.get("bridge") == network.bridge)


def vms_on(network: Network, *, running: bool = False) -> list[VM]:
    """The VMs of the network's host (present ones) with a NIC on it; ``running``: only those running
    or paused (a stopped VM is not cut off by a stopped network)."""
    qs = VM.objects.filter(host_id=network.host_id, gone_at__isnull=True).exclude(interfaces=[])
    if running:
        qs = qs.filter(state__in=("running", "paused"))
    return [vm for vm in qs.only("uuid", "name", "state", "interfaces", "host_id")
            if any(_on(nic, network) for nic in vm.interfaces or ())]  # fmt: skip


def attached_counts(networks: list[Network]) -> dict[int, int]:
    """For a page of networks: how many VMs each has (one query per host on the page)."""
    counts = {n.pk: 0 for n in networks}
    by_host: dict[int, list[Network]] = {}
    for n in networks:
        by_host.setdefault(n.host_id, []).append(n)
    for host_id, nets in by_host.items():
        for vm in VM.objects.filter(host_id=host_id, gone_at__isnull=True).exclude(interfaces=[]).only("interfaces"):
            for n in nets:
                if any(_on(nic, n) for nic in vm.interfaces or ()):
                    counts[n.pk] += 1
    return counts


def leases_of(network: Network) -> list[Lease]:
    return list(network.leases.order_by("ip"))


def vm_nics(vm: VM) -> list[dict]:
    """The VM page's NICs: each with its network row and the addresses the guest has on it, saying
    where each address comes from (the DHCP lease of its network, the ARP table, the guest agent)."""
    nics = list(vm.interfaces or ())
    if not nics or vm.host_id is None:
        return []
    names = {n.get("network") for n in nics if n.get("network")}
    networks = {n.name: n for n in Network.objects.filter(host_id=vm.host_id, name__in=names)}
    macs = [n.get("mac") for n in nics if n.get("mac")]
    leases: dict[str, list[dict]] = {}
    for lease in Lease.objects.filter(network__host_id=vm.host_id, mac__in=macs).select_related("network"):
        leases.setdefault(lease.mac, []).append({"ip": lease.ip, "prefix": lease.prefix, "family": lease.family,
                                                 "source": "lease", "network": lease.network.name,
                                                 "hostname": lease.hostname, "expires_at": lease.expires_at})  # fmt: skip
    others: dict[str, list[dict]] = {}
    for a in GuestAddress.objects.filter(vm=vm):
        others.setdefault(a.mac, []).append({"ip": a.ip, "prefix": a.prefix, "family": a.family, "source": a.source})
    shown = []
    for nic in nics:
        mac = nic.get("mac", "")
        network = networks.get(nic.get("network", ""))
        addresses = [  # a NIC moved to another network may keep an old lease there until it expires
            a for a in leases.get(mac, []) if not nic.get("network") or a["network"] == nic["network"]
        ] if vm.state in ("running", "paused") else []  # fmt: skip
        seen = {a["ip"] for a in addresses}
        addresses += [a for a in others.get(mac, []) if a["ip"] not in seen]
        shown.append({**nic, "network_row": network, "addresses": addresses})
    return shown
